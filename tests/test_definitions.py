"""What the grader runs of an answer cell: its definitions only (simclr_helpers.definitions)."""
from __future__ import annotations

import pytest

from autograder.course.examples import solutions
from autograder.course.variants import CORRECT, PROBE_OWN_LOOP
from simclr_helpers import checks, definitions


@pytest.fixture(autouse=True)
def _ops_restored():
    saved = dict(checks.OPS)
    yield
    checks.OPS.update(saved)


def _namespace() -> dict:
    namespace = {"__name__": "__main__"}
    exec(definitions.NOTEBOOK_IMPORTS, namespace)
    return namespace


def _define(source: str) -> tuple[dict, list[str]]:
    namespace = _namespace()
    return namespace, definitions.define(source, namespace)


@pytest.mark.parametrize("cells", [solutions()] + [{**solutions(), **c} for c in CORRECT.values()]
                         + [{**solutions(), "linear_probe": PROBE_OWN_LOOP}])
def test_every_correct_answer_cell_is_defined_whole(cells):
    for name, source in cells.items():
        namespace, left_out = _define(source)
        assert left_out == [], left_out
        assert name in namespace


def test_constants_imports_layers_and_defaults_are_kept():
    namespace, left_out = _define('''
import math
from torch.nn import functional as G
TAU = 0.5
SIZES = (32, -1, 2 * 8)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MEAN = torch.tensor([0.49, 0.48, 0.45])
LAYER = nn.Sequential(nn.Linear(4, 2), nn.ReLU())
JITTER = transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)
SQUARE = lambda x: x * x

@torch.no_grad()
def features(x, scale=math.sqrt(2), device=torch.device("cpu")):
    return G.relu(x) * scale

class Head(nn.Module):
    """A head."""
    size: int = 3

    def __init__(self, d=TAU):
        super().__init__()

    @property
    def width(self):
        return self.size

    @width.setter
    def width(self, value):
        self.size = value

    @staticmethod
    def make():
        return Head()
''')
    assert left_out == []
    assert namespace["SIZES"] == (32, -1, 16) and namespace["DEVICE"] == "cpu"
    assert namespace["features"](-namespace["MEAN"]).abs().sum() == 0
    assert namespace["Head"].make().width == 3


@pytest.mark.parametrize("statement", [
    "print('hello')",
    "checks.OPS['nt_xent'] = lambda *a, **k: None",
    "import simclr_helpers.checks as c\nc.OPS.clear()",
    "for _ in range(3):\n    pass",
    "while True:\n    pass",
    "_ = helper()",
    "X = dict(Evil)",
    "X = sorted([1, 2], key=lambda v: helper())",
    "X = np.apply_along_axis(helper, 0, np.zeros(2))",
    "X = np.apply_along_axis(exec, 0, np.array(['1']))",
    "X = getattr(checks, 'OPS')",
    "X = Evil.keys()",
    "@patching_decorator\ndef f():\n    pass",
    "def f(x=helper()):\n    pass",
    "class K(nn.Module, metaclass=type):\n    pass",
    "@patching_decorator\nclass K:\n    pass",
    "if True:\n    checks.OPS.clear()",
    "try:\n    checks.OPS.clear()\nexcept Exception:\n    pass",
    "with torch.no_grad():\n    checks.OPS.clear()",
    "X = [helper() for _ in range(1)]",
    "X = f'{helper()}'",
])
def test_statements_that_run_code_are_left_out(statement):
    namespace = _namespace()
    definitions.define("import simclr_helpers.checks as checks\n"
                       "def helper():\n    checks.OPS.clear()\n"
                       "def patching_decorator(f):\n    checks.OPS.clear()\n    return f\n"
                       "class Evil:\n    @staticmethod\n    def keys():\n        checks.OPS.clear()\n", namespace)
    left_out = definitions.define(statement, namespace)
    assert len(left_out) == 1 and "line" in left_out[0], left_out
    assert checks.OPS, "a left-out statement ran"


@pytest.mark.parametrize("body", [
    "    x = helper()",
    "    checks.OPS.clear()",
    "    @patching_decorator\n    def f(self):\n        pass",
    "    def f(self, x=helper()):\n        pass",
    "    def __init_subclass__(cls):\n        checks.OPS.clear()",
    "    staticmethod = patching_decorator\n    @staticmethod\n    def f():\n        pass",
])
def test_class_bodies_keep_their_definitions_only(body):
    namespace = _namespace()
    definitions.define("import simclr_helpers.checks as checks\n"
                       "def helper():\n    checks.OPS.clear()\n"
                       "def patching_decorator(f):\n    checks.OPS.clear()\n    return f\n", namespace)
    left_out = definitions.define(f"class K(nn.Module):\n    size = 1\n{body}\n\nclass L(K):\n    pass\n", namespace)
    assert left_out, "nothing was left out"
    assert checks.OPS, "a class body ran a student's code"
    assert namespace["K"].size == 1 and issubclass(namespace["L"], namespace["K"])


def test_a_function_body_runs_only_when_called():
    namespace, left_out = _define("def f():\n    raise RuntimeError('called')\n")
    assert left_out == [] and callable(namespace["f"])
    with pytest.raises(RuntimeError):
        namespace["f"]()
