"""The lab notebook: the release matches the source and hides its secrets, nbgrader's verdicts, a headless run."""
from __future__ import annotations

import ast
import filecmp
import inspect
import shutil
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader import utils as nbgrader_utils
from nbgrader.validator import Validator
from traitlets.config import Config

import reference
from autograder.course.nbgrader_commands import generate_release

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source" / "simclr"
RELEASE = ROOT / "release" / "simclr"
NOTEBOOK = "simclr_lab.ipynb"
CACHES = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc", ".hypothesis")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def files_under(folder: Path) -> set[str]:
    ignored = {".ipynb_checkpoints", "__pycache__", ".hypothesis"}
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not ignored & set(p.relative_to(folder).parts) and p.suffix != ".pyc"}


def comparable(nb: nbformat.NotebookNode) -> list:
    """What a release must reproduce: cell ids, types, sources and nbgrader metadata, and the kernel."""
    cells = [(c.get("id"), c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]
    return [nb.metadata.get("kernelspec"), *cells]


# ---------------------------------------------------------------- release in sync with source

def test_release_is_regenerated_from_source(tmp_path):
    """Regenerating the release from source/ with nbgrader gives the committed release/."""
    shutil.copytree(SOURCE, tmp_path / "source" / "simclr", ignore=CACHES)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    fresh = generate_release("simclr", course_root=tmp_path)
    assert files_under(fresh) == files_under(RELEASE), "release/ has other files than a fresh release: regenerate it"
    for name in files_under(RELEASE):
        if name.endswith(".ipynb"):
            assert comparable(read(fresh / name)) == comparable(read(RELEASE / name)), (
                f"release/simclr/{name} is out of date: run `.venv/bin/python -m autograder.release`")
        else:
            assert filecmp.cmp(fresh / name, RELEASE / name, shallow=False), f"release/simclr/{name} is out of date"


def test_release_has_no_outputs():
    for cell in read(RELEASE / NOTEBOOK).cells:
        assert cell.cell_type != "code" or not cell.outputs, "the release notebook holds outputs"


def test_release_ships_the_cell_timeout_of_validate(monkeypatch, tmp_path):
    """`nbgrader validate` run in the students' folder gives each cell 10 minutes, not nbgrader's 30 s."""
    from nbgrader.apps.validateapp import ValidateApp
    from nbgrader.preprocessors import Execute

    def cell_timeout(folder: Path) -> int:
        monkeypatch.chdir(folder)
        app = ValidateApp()
        app.initialize([])
        return Execute(parent=Validator(config=app.config)).timeout

    assert cell_timeout(tmp_path) < 600, "nbgrader's default changed: this test no longer shows anything"
    assert cell_timeout(RELEASE) >= 600


# ---------------------------------------------------------------- nothing secret in the release

def split_regions(source: str) -> tuple[list[str], list[str]]:
    """(lines between BEGIN/END SOLUTION or HIDDEN TESTS markers, the other lines), stripped."""
    inside_lines, outside_lines, inside = [], [], False
    for line in source.splitlines():
        if "### BEGIN SOLUTION" in line or "### BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "### END SOLUTION" in line or "### END HIDDEN TESTS" in line:
            inside = False
        else:
            (inside_lines if inside else outside_lines).append(line.strip())
    return inside_lines, outside_lines


def _code_lines(obj) -> list[str]:
    """The lines of a reference function or class, without signature lines, docstrings and comments."""
    source = textwrap.dedent(inspect.getsource(obj))
    skip = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            skip.add(node.lineno)
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                skip.update(range(first.lineno, first.end_lineno + 1))
    return [line.strip() for number, line in enumerate(source.splitlines(), 1)
            if number not in skip and not line.strip().startswith("#")]


def secret_lines() -> set[str]:
    """Distinctive lines of the solutions and hidden tests (source notebook and reference package)
    that appear nowhere in what students may see (the notebook outside those regions, the helpers)."""
    source_nb = read(SOURCE / NOTEBOOK)
    secret = {line for cell in source_nb.cells for line in split_regions(cell.source)[0]}
    for component in (reference.get_augmentations, reference.ProjectionHead, reference.nt_xent,
                      reference.train_epoch, reference.linear_probe):
        secret.update(_code_lines(component))
    public = set()
    for cell in source_nb.cells:
        public.update(split_regions(cell.source)[1])
    for helper in (SOURCE / "simclr_helpers").glob("*.py"):
        public.update(line.strip() for line in helper.read_text().splitlines())
    return {line for line in secret if len(line) >= 20 and line not in public}


def leaks(text: str, secrets: set[str]) -> set[str]:
    present = {line.strip() for line in text.splitlines()}
    return {m for m in MARKERS if m in text} | (secrets & present)


def test_scanner_finds_the_secrets_in_the_source():
    """The scan below is only worth something if it recognises the solutions where they are."""
    secrets = secret_lines()
    assert len(secrets) >= 60, f"only {len(secrets)} distinctive solution/hidden-test lines: the scan is too weak"
    source_text = "\n".join(c.source for c in read(SOURCE / NOTEBOOK).cells)
    assert len(leaks(source_text, secrets)) >= 50
    reference_text = "\n".join((ROOT / "reference" / f).read_text() for f in ("loss.py", "model.py", "train.py"))
    assert leaks(reference_text, secrets)


def test_release_holds_no_solution_and_no_hidden_test():
    secrets = secret_lines()
    for name in sorted(files_under(RELEASE)):
        path = RELEASE / name
        text = "\n".join(c.source for c in read(path).cells) if name.endswith(".ipynb") else path.read_text()
        found = leaks(text, secrets)
        assert not found, f"release/simclr/{name} contains solution or hidden-test lines: {sorted(found)[:5]}"


# ---------------------------------------------------------------- nbgrader's verdicts and a headless run

class RecordingValidator(Validator):
    """nbgrader's validator, keeping the notebook it executed (nbgrader 0.9's ``_preprocess``)."""
    executed: nbformat.NotebookNode | None = None

    def _preprocess(self, nb):
        self.executed = super()._preprocess(nb)
        return self.executed


def validate(path: Path, **options) -> tuple[dict, nbformat.NotebookNode, float]:
    config = Config()
    config.Execute.timeout = 600
    for key, value in options.items():
        setattr(config.Validator, key, value)
    validator = RecordingValidator(config=config)
    start = time.perf_counter()
    verdict = validator.validate(str(path))
    return verdict, validator.executed, time.perf_counter() - start


@pytest.fixture(scope="module")
def validated_source(cifar_dir):
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SIMCLR_PRESET", raising=False)
        return validate(SOURCE / NOTEBOOK, validate_all=True)


@pytest.fixture(scope="module")
def validated_release(cifar_dir):
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SIMCLR_PRESET", raising=False)
        return validate(RELEASE / NOTEBOOK, invert=True)


def test_source_passes_every_test_without_errors(validated_source):
    """The validator (every cell checked) finds no failing test, no error and nothing on stderr."""
    verdict, executed, seconds = validated_source
    print(f"source notebook, grading preset: {seconds:.0f} s")
    assert verdict == {}, f"the source notebook does not validate: {verdict}"
    graded = [c for c in executed.cells if nbgrader_utils.is_grade(c) and c.cell_type == "code"]
    scored = [c for c in graded if c.metadata.nbgrader.points]
    assert len(scored) == 12 and sum(c.metadata.nbgrader.points for c in graded) == 22
    assert [c.metadata.nbgrader.grade_id for c in graded if c not in scored] == ["self_check"]
    for cell in graded:
        assert nbgrader_utils.determine_grade(cell)[0] == cell.metadata.nbgrader.points, cell.metadata.nbgrader.grade_id


def test_source_runs_headless_with_every_figure(validated_source):
    # How long it takes is a benchmark's to record (python -m reference.measure_notebook --preset grading), not a
    # test's to assert: a busy machine would fail it. What keeps it short is the preset, checked here.
    from simclr_helpers.runtime import PRESETS
    grading = PRESETS["grading"]
    assert grading.encoder == "small_cnn" and grading.pretrain_fraction * grading.epochs <= 0.05, grading
    _, executed, _ = validated_source
    figures = sum("image/png" in o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    # 4 before training, the loss curve, probe, kNN, t-SNE, retrieval, 8.5; the switched-off exercises draw none
    assert figures >= 9, f"only {figures} figures were drawn"
    assert "preset: grading" in "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                                       for o in c.outputs)


def test_release_fails_every_test(validated_release):
    """Every test cell with points fails (``--invert`` counts a 0-point cell, the self-check, as passed whatever its
    output: test_release_errors_only_in_test_cells shows it fails too)."""
    verdict, _, _ = validated_release
    passed = [cell for cell in verdict.get("passed", []) if "lab.self_check(" not in cell["source"]]
    assert set(verdict) <= {"passed"} and not passed, f"the unchanged release passes some tests: {verdict}"


def test_release_errors_only_in_test_cells(validated_release):
    """Unwritten stubs fail their tests; every other cell runs (or says it is skipped) without an error."""
    _, executed, _ = validated_release
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        failed = any(o.output_type == "error" for o in cell.outputs)
        if nbgrader_utils.is_grade(cell):
            assert failed, f"test cell {cell.metadata.nbgrader.grade_id} did not fail on the unwritten stubs"
            assert nbgrader_utils.determine_grade(cell)[0] == 0
        else:
            assert not failed, f"a cell that is not a test failed in the release:\n{cell.source[:300]}"
