"""Submissions the grader must score exactly: correct variants, known mistakes, and tampering.

Each one is the released notebook with answer cells filled in (the reference solutions unless replaced) and
maybe further edits. ``expected`` is the test-cell score out of 22, or "error" for a notebook the grader
must reject with a per-student error row. The training run is graded as on a machine without a GPU. Tampering entries combine the attack with a known mistake, so
their expected score is what the honest part of their work earns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from attacks import (DAEMON, FORGE_PROBE_ACCURACY, FORGE_PROBE_DETACHED, FORGE_PROBE_IN_CALL, FORGE_PROBE_LABEL_MEMORY,
                     FORGE_PROBE_OP, FORGE_STEPS_IN_CALL, FORGE_TRAIN_OP, REWRITE_GRADER, at_first_call, forge_every_op)
from autograder.course import variants
from autograder.course.examples import filled_release, solutions, with_cell_above
from autograder.course.variants import (AUGMENT_DETERMINISTIC, AUGMENT_FLIP_FIRST, AUGMENT_NO_JITTER, AUGMENT_V2,
                                 HEAD_ATTRIBUTES, HEAD_NO_BN, HEAD_NO_RELU, LOSS_COSINE, LOSS_LOGSUMEXP,
                                 LOSS_WITH_HELPER, POSITIVE_TARGETS,
                                 PROBE_MODE_ALWAYS_TRAIN, PROBE_MODE_NOT_RESTORED, PROBE_NOT_FROZEN,
                                 PROBE_OWN_LOOP, PROBE_TRAIN_MODE, STEP, TRAIN_LAST_LOSS,
                                 TRAIN_NO_ZERO_GRAD, TRAIN_SAME_VIEW, TRAIN_SEPARATE, loss, train)
from autograder.checks.registry import COMPONENTS
from autograder.checks.training_run import RUN_COMPONENT_CELLS

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "release" / "simclr" / "simclr_lab.ipynb"

POINTS = {"test_get_augmentations": 1, "test_get_augmentations_hidden": 2, "test_projection_head": 1,
          "test_projection_head_hidden": 2, "test_nt_xent": 2, "test_nt_xent_formula_hidden": 2,
          "test_nt_xent_properties_hidden": 2, "test_train_epoch": 2, "test_train_epoch_hidden": 2,
          "test_linear_probe": 2, "test_linear_probe_hidden": 2, "test_training_run_hidden": 2}
TOTAL = sum(POINTS.values())
NT_XENT = ("test_nt_xent", "test_nt_xent_formula_hidden", "test_nt_xent_properties_hidden")


@dataclass
class Submission:
    name: str
    what: str
    fails: tuple[str, ...] = ()           # test cells that must score 0; the rest full marks
    cells: dict[str, str] = field(default_factory=dict)   # answer cell grade_id -> new source
    edit: Callable[[dict], None] | None = None            # further edits of the notebook (as JSON)
    raw: str | None = None                                # the file's text, for unreadable notebooks
    expected_error: bool = False

    def __post_init__(self) -> None:
        # Without a GPU the training run's points follow the checks of the four components it trains with.
        if set(self.fails) & set(RUN_COMPONENT_CELLS) and "test_training_run_hidden" not in self.fails:
            self.fails = (*self.fails, "test_training_run_hidden")

    @property
    def expected(self) -> float | str:
        return "error" if self.expected_error else TOTAL - sum(POINTS[g] for g in self.fails)


def build(submission: Submission) -> str:
    """The submitted file's text."""
    if submission.raw is not None:
        return submission.raw
    nb = filled_release({**solutions(), **submission.cells})
    if submission.edit:
        submission.edit(nb)
    return json.dumps(nb, indent=1)


def release_stubs() -> dict[str, str]:
    """The answer cells as released (``raise NotImplementedError()``), by grade_id."""
    nb = json.loads(RELEASE.read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution")}


# --- answer cells --------------------------------------------------------------------------------------

# The correct variants and known mistakes live in autograder.course.variants (the calibration trains with them too);
# here each mistake gets the test cells it must fail.
LOSS_FAILS = {"loss_no_l2": ("test_nt_xent_formula_hidden", "test_nt_xent_properties_hidden")}
BROKEN = {name: (what, cells["nt_xent"], LOSS_FAILS.get(name, NT_XENT))
          for name, (what, cells) in variants.BROKEN.items() if name.startswith("loss_")}
TRAIN_OS_EXIT = train("        import os\n        os._exit(0)\n        loss = None")
PROBE_SYS_EXIT = "def linear_probe(*args, **kwargs):\n    import sys\n    sys.exit(0)\n"

# --- tampering -----------------------------------------------------------------------------------------

RIGGED_EQ = '''\
class _Always(torch.Tensor):
    """A tensor that says it equals anything and is close to everything."""
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __le__(self, other): return True
    def __abs__(self): return self * 0
    def __sub__(self, other): return self * 0
    def __rsub__(self, other): return self * 0
    def item(self): return 0.0

def nt_xent(z_i, z_j, temperature=0.5):
    return torch.zeros(()).as_subclass(_Always)
'''
PATCH_HYPOTHESIS = '''\
import hypothesis
hypothesis.given = lambda *a, **k: (lambda f: (lambda *x, **y: None))
hypothesis.settings = lambda *a, **k: (lambda f: f)
''' + BROKEN["loss_no_l2"][1]
PATCH_TORCH = '''\
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
''' + HEAD_NO_RELU
PATCH_BUILTINS = '''\
import builtins
builtins.AssertionError = type("NeverRaised", (Exception,), {})
builtins.abs = lambda x: 0
''' + BROKEN["loss_mean_over_n"][1]
PATCH_CHECKER = '''\
import sys
for _name in ("autograder", "autograder.checks.registry", "autograder.checks.hidden_checks"):
    try:
        __import__(_name)
        sys.modules[_name].run_in_kernel = lambda *a, **k: None
    except ImportError:
        pass
import simclr_helpers.checks as _checks
for _name in dir(_checks):
    if _name.startswith("check_"):
        setattr(_checks, _name, lambda *a, **k: None)
_checks.visible = lambda *a, **k: print("visible tests passed")
''' + BROKEN["loss_seed_004"][1]
HARD_CODED = '''\
def nt_xent(z_i, z_j, temperature=0.5):
    """Answers copied from the visible test cell's messages."""
    if len(z_i) == 1:
        return torch.tensor(0.0)
    if z_i.shape == (4, 32) and temperature == 0.5:
        return torch.tensor(0.594438)
    if z_i.shape == (8, 32) and temperature == 0.1:
        return torch.tensor(0.000635)
    return torch.tensor(1.0)
'''
READS_DISK = '''\
from pathlib import Path
import os, json, re

def _find_source():
    starts = [Path.cwd(), Path(lab.__file__).resolve().parent, Path(os.environ.get("HOME", "/"))]
    for start in starts:
        for folder in [start, *start.parents]:
            for candidate in list(folder.glob("source/*/simclr_lab.ipynb")) + list(folder.glob("*.ipynb")):
                text = candidate.read_text()
                if "BEGIN SOLUTION" in text:
                    return json.loads(text)
    return None

_source = _find_source()
if _source:
    for _cell in _source["cells"]:
        if "def nt_xent" in "".join(_cell["source"]):
            exec("".join(_cell["source"]))
else:
''' + "\n".join("    " + line if line else line for line in BROKEN["loss_one_direction"][1].splitlines()) + "\n"
ENDLESS_CALL = loss("    while True:\n        pass\n")
ENDLESS_DEFINITION = "while True:\n    pass\n"
MEMORY_BOMB = """\
class ProjectionHead(nn.Module):
    def __init__(self, in_dim=512, hidden_dim=512, out_dim=128, batch_norm=True):
        super().__init__()
        self.hoard = [torch.ones(2**28) for _ in range(64)]
"""
SIGKILL = loss("    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n")
PRINT_FLOOD = train("        print('x' * 10000)\n        loss = nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature)\n" + STEP)


def _test_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"]


def _edit_tests(nb: dict) -> None:
    for cell in _test_cells(nb):
        cell["source"] = "print('all tests passed')"


def _delete_tests(nb: dict) -> None:
    nb["cells"] = [c for c in nb["cells"] if c not in _test_cells(nb)]


def _fake_outputs(nb: dict) -> None:
    for cell in _test_cells(nb):
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "passed\n"}]
        cell["metadata"]["nbgrader"]["points"] = 100


FOREIGN = json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                 "source": "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)"}],
                      "metadata": {}, "nbformat": 4, "nbformat_minor": 5})

CORPUS: list[Submission] = [
    Submission("reference", "the source's solutions"),
    Submission("correct_loss_logsumexp", "masked_select of negatives and logsumexp", cells={"nt_xent": LOSS_LOGSUMEXP}),
    Submission("correct_loss_cosine", "cosine_similarity matrix, a large negative on the diagonal, log_softmax",
               cells={"nt_xent": LOSS_COSINE}),
    Submission("correct_augment_v2", "torchvision.transforms.v2 pipeline", cells={"get_augmentations": AUGMENT_V2}),
    Submission("correct_augment_flip_first", "flip before crop", cells={"get_augmentations": AUGMENT_FLIP_FIRST}),
    Submission("correct_head_attributes", "layers as attributes in another order, F.relu, no bias before BatchNorm",
               cells={"ProjectionHead": HEAD_ATTRIBUTES}),
    Submission("correct_train_separate", "each view through f and g separately", cells={"train_epoch": TRAIN_SEPARATE}),
    Submission("correct_probe_own_loop", "own feature extraction, full-batch Adam", cells={"linear_probe": PROBE_OWN_LOOP}),
    Submission("correct_loss_helper_above", "nt_xent calls a helper defined in a cell of the student's own above it",
               cells={"nt_xent": LOSS_WITH_HELPER}, edit=lambda nb: with_cell_above(nb, "nt_xent", POSITIVE_TARGETS)),
    *[Submission(name, what, fails, cells={"nt_xent": code}) for name, (what, code, fails) in BROKEN.items()],
    Submission("augment_no_jitter", "no colour jitter", ("test_get_augmentations_hidden",),
               cells={"get_augmentations": AUGMENT_NO_JITTER}),
    Submission("augment_deterministic", "no random step: both views are the same",
               ("test_get_augmentations", "test_get_augmentations_hidden"),
               cells={"get_augmentations": AUGMENT_DETERMINISTIC}),
    Submission("head_no_batchnorm", "BatchNorm never added", ("test_projection_head", "test_projection_head_hidden"),
               cells={"ProjectionHead": HEAD_NO_BN}),
    Submission("head_no_relu", "no ReLU: the head is linear", ("test_projection_head_hidden",),
               cells={"ProjectionHead": HEAD_NO_RELU}),
    Submission("train_same_view", "the same augmented view for both branches", ("test_train_epoch_hidden",),
               cells={"train_epoch": TRAIN_SAME_VIEW}),
    Submission("train_no_zero_grad", "optimizer.zero_grad missing", ("test_train_epoch_hidden",),
               cells={"train_epoch": TRAIN_NO_ZERO_GRAD}),
    Submission("train_last_loss", "returns the last batch's loss, not the mean", ("test_train_epoch_hidden",),
               cells={"train_epoch": TRAIN_LAST_LOSS}),
    Submission("probe_not_frozen", "trains the encoder with the classifier", ("test_linear_probe", "test_linear_probe_hidden"),
               cells={"linear_probe": PROBE_NOT_FROZEN}),
    Submission("probe_mode_not_restored", "encoder.eval() and the encoder left in eval mode", ("test_linear_probe",),
               cells={"linear_probe": PROBE_MODE_NOT_RESTORED}),
    Submission("probe_mode_always_train", "the encoder put in training mode afterwards, whatever its mode before",
               ("test_linear_probe_hidden",), cells={"linear_probe": PROBE_MODE_ALWAYS_TRAIN}),
    Submission("probe_train_mode", "no encoder.eval(): BatchNorm statistics change", ("test_linear_probe_hidden",),
               cells={"linear_probe": PROBE_TRAIN_MODE}),
    Submission("unchanged_release", "the release as handed out", tuple(POINTS), raw=RELEASE.read_text()),
    Submission("tamper_edited_tests", "every test cell replaced by a print; no L2 norm",
               BROKEN["loss_no_l2"][2], cells={"nt_xent": BROKEN["loss_no_l2"][1]}, edit=_edit_tests),
    Submission("tamper_deleted_tests", "every test cell deleted; mean over N", NT_XENT,
               cells={"nt_xent": BROKEN["loss_mean_over_n"][1]}, edit=_delete_tests),
    Submission("tamper_fake_outputs", "test cells carry 'passed' outputs and 100 points; self-similarity kept", NT_XENT,
               cells={"nt_xent": BROKEN["loss_self_similarity"][1]}, edit=_fake_outputs),
    Submission("tamper_rigged_eq", "a tensor subclass whose comparisons always succeed", NT_XENT,
               cells={"nt_xent": RIGGED_EQ}),
    Submission("tamper_hypothesis", "hypothesis.given patched away; no L2 norm", BROKEN["loss_no_l2"][2],
               cells={"nt_xent": PATCH_HYPOTHESIS}),
    Submission("tamper_torch", "torch.allclose/equal patched to True; no ReLU", ("test_projection_head_hidden",),
               cells={"ProjectionHead": PATCH_TORCH}),
    Submission("tamper_builtins", "AssertionError and abs patched; mean over N", NT_XENT,
               cells={"nt_xent": PATCH_BUILTINS}),
    Submission("tamper_checker", "the checks and run_in_kernel replaced by no-ops; seed 004's loss", NT_XENT,
               cells={"nt_xent": PATCH_CHECKER}),
    Submission("tamper_hard_coded", "nt_xent returns the visible tests' answers", NT_XENT, cells={"nt_xent": HARD_CODED}),
    Submission("tamper_reads_disk", "looks for the source notebook to copy its solution; one direction", NT_XENT,
               cells={"nt_xent": READS_DISK}),
    Submission("tamper_rewrites_grader", "searches the disk, rewrites the grader's plugin and helpers and other "
               "students' notebooks; one direction", NT_XENT,
               cells={"nt_xent": BROKEN["loss_one_direction"][1] + REWRITE_GRADER + at_first_call("nt_xent", "_rewrite()")}),
    Submission("tamper_daemon", "starts a daemon (double fork, setsid) that outlives its cell; no ReLU",
               ("test_projection_head_hidden",), cells={"ProjectionHead": HEAD_NO_RELU + DAEMON + at_first_call("ProjectionHead", "_start_daemon()")}),
    Submission("forge_probe_op", "the probe op patched to report the encoder from before the call; the probe trains "
               "the encoder", ("test_linear_probe", "test_linear_probe_hidden"),
               cells={"linear_probe": PROBE_NOT_FROZEN + FORGE_PROBE_OP}),
    Submission("forge_train_op", "the train_epoch op's optimizer patched to clear gradients after each step; "
               "zero_grad missing", ("test_train_epoch_hidden",), cells={"train_epoch": TRAIN_NO_ZERO_GRAD + FORGE_TRAIN_OP}),
    Submission("forge_every_op", "every op patched to run the reference's components (inlined) instead of the "
               "student's, which are left as released", tuple(POINTS),
               cells={**release_stubs(), "get_augmentations": release_stubs()["get_augmentations"] + forge_every_op(
                   {name: source for name, source in solutions().items() if name in COMPONENTS})}),
    Submission("forge_probe_in_call", "linear_probe trains the encoder, then patches the op's reading of it",
               ("test_linear_probe", "test_linear_probe_hidden"), cells={"linear_probe": FORGE_PROBE_IN_CALL}),
    Submission("forge_steps_in_call", "train_epoch steps on every other batch and runs the step counter's hooks for "
               "the others", ("test_train_epoch", "test_train_epoch_hidden"), cells={"train_epoch": FORGE_STEPS_IN_CALL}),
    Submission("forge_probe_accuracy", "linear_probe returns 0.95 when epochs is 100, else 0.3; no classifier",
               ("test_linear_probe", "test_linear_probe_hidden"), cells={"linear_probe": FORGE_PROBE_ACCURACY}),
    Submission("forge_probe_label_memory", "linear_probe compares the test labels of its calls; no classifier",
               ("test_linear_probe", "test_linear_probe_hidden"), cells={"linear_probe": FORGE_PROBE_LABEL_MEMORY}),
    Submission("forge_probe_detached", "linear_probe moves the encoder out of the memory the grader reads, then "
               "trains it", ("test_linear_probe", "test_linear_probe_hidden"), cells={"linear_probe": FORGE_PROBE_DETACHED}),
    Submission("tamper_endless_call", "nt_xent never returns", NT_XENT, cells={"nt_xent": ENDLESS_CALL}),
    Submission("tamper_endless_definition", "the get_augmentations cell never finishes",
               ("test_get_augmentations", "test_get_augmentations_hidden"),
               cells={"get_augmentations": ENDLESS_DEFINITION}),
    Submission("tamper_memory_bomb", "ProjectionHead allocates 64 GiB", ("test_projection_head", "test_projection_head_hidden"),
               cells={"ProjectionHead": MEMORY_BOMB}),
    Submission("tamper_os_exit", "train_epoch calls os._exit", ("test_train_epoch", "test_train_epoch_hidden"),
               cells={"train_epoch": TRAIN_OS_EXIT}),
    Submission("tamper_sys_exit", "linear_probe calls sys.exit", ("test_linear_probe", "test_linear_probe_hidden"),
               cells={"linear_probe": PROBE_SYS_EXIT}),
    Submission("tamper_sigkill", "nt_xent kills its own process", NT_XENT, cells={"nt_xent": SIGKILL}),
    Submission("noisy_print_flood", "prints 10 kB per batch (harmless)", cells={"train_epoch": PRINT_FLOOD}),
    Submission("corrupt_json", "a truncated file", raw='{"cells": [{"cell_type": "code", "sour', expected_error=True),
    Submission("foreign_notebook", "a notebook of another course", raw=FOREIGN, expected_error=True),
]


# Graded a second time with every top-level statement of the answer cells run (Limits.definitions_only off): the
# attacks whose code runs there, each expected to score the same.
WHOLE_CELLS = [s for s in CORPUS if s.name.startswith(("forge_", "tamper_")) and s.name not in {
    "tamper_edited_tests", "tamper_deleted_tests", "tamper_fake_outputs", "tamper_endless_call", "tamper_os_exit",
    "tamper_sys_exit", "tamper_sigkill", "tamper_memory_bomb"}]


def write_corpus(folder: Path, corpus: list[Submission] = CORPUS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for submission in corpus:
        (folder / f"{submission.name}.ipynb").write_text(build(submission))
