"""The nbgrader preprocessor that grades test cells with the checks instead of executing the notebook.

``nbgrader_config.py`` puts :class:`TrustedChecks` in place of nbgrader's ``Execute`` in autograde. Nothing
runs in a kernel the student's code could change: the answer cells go to a separate process
(``grading.grade_cells``), each test cell gets one output (stdout "passed", or an error with the failed
check's message) that nbgrader's own ``SaveAutoGrades`` turns into points, and the hidden part of every test
cell is removed so that neither the gradebook's autograded copy nor the feedback shows it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, SaveAutoGrades
import dataclasses

from traitlets import Bool, Enum, Float, Int, Unicode

from autograder.boundary import isolation
from autograder.checks.grading import answer_cells, digest, grade_cells
from autograder.checks.registry import NOT_GRADED
from autograder.boundary.sandbox import Limits
from autograder.checks.training_run import TrainingRunSettings

HIDDEN_NOTE = "# (hidden tests: run by the grader; their result is below)"


class TrustedChecks(NbGraderPreprocessor):
    """Grade every test cell with the registered checks, run on the answer cells in a separate process."""

    check_timeout_s = Float(Limits.check_timeout_s, help="Time limit of one check, in seconds: CPU time of all its "
                            "processes where the sandbox's cgroup counts it, else wall-clock time").tag(config=True)
    startup_timeout_s = Float(Limits.startup_timeout_s, help="Limit for defining the answer cells, in seconds (CPU "
                              "time, as check_timeout_s)").tag(config=True)
    overload_factor = Float(Limits.overload_factor, help="The wall-clock backstop of a CPU-time limit, in multiples "
                            "of it: a check past it that was mostly waiting for a CPU is not graded (grade again), "
                            "never failed").tag(config=True)
    boot_timeout_s = Float(Limits.boot_timeout_s, help="Limit for the student process's own start-up (importing "
                           "torch, before any student code), in seconds; not part of the student's time").tag(config=True)
    memory_mb = Int(Limits.memory_mb, help="Memory (data segment) limit of the student process, in MiB; 0: none").tag(
        config=True)
    cpu_s = Int(Limits.cpu_s, help="CPU-time limit of one student process, in seconds (a backstop)").tag(config=True)
    threads = Int(Limits.threads, help="CPU threads of the student process, and the CPUs of one submission's sandbox "
                  "together (where a cgroup with the cpu controller can be made)").tag(config=True)
    sandbox = Enum(list(isolation.MODES), Limits.sandbox, help="'bwrap': student code runs in the grading sandbox "
                   "(Linux namespaces); 'none': no isolation, for trusted code only (warns on every run)").tag(config=True)
    definitions_only = Bool(Limits.definitions_only, help="Run only the answer cells' definitions (a saving of "
                            "time: verdicts do not depend on it)").tag(config=True)
    max_processes = Int(Limits.max_processes, help="Tasks of one submission's sandbox, all together (where a cgroup "
                        "can be made)").tag(config=True)
    zygote_mb = Int(Limits.zygote_mb, help="Memory of a sandbox beyond memory_mb: the interpreter with torch "
                    "imported (where a cgroup can be made)").tag(config=True)
    scratch_mb = Int(Limits.scratch_mb, help="Size of each student process's /tmp and of its /dev/shm, in MiB").tag(
        config=True)
    output_mb = Int(Limits.output_mb, help="Largest file a sandbox may write, in MiB").tag(config=True)
    budget_s = Float(None, allow_none=True, help="Wall-clock budget of one submission, everything included (default: "
                     "the sum of its limits' backstops)").tag(config=True)
    results_directory = Unicode(
        "", help="Folder of <student>.json results computed ahead by `python -m autograder grade`").tag(config=True)

    @property
    def limits(self) -> Limits:
        return Limits(**{field.name: getattr(self, field.name) for field in dataclasses.fields(Limits)})

    def _results(self, nb: NotebookNode, student: str) -> dict:
        cells = answer_cells(nb)
        ahead = Path(self.results_directory) / f"{student}.json" if self.results_directory else None
        if ahead is not None and ahead.is_file():
            saved = json.loads(ahead.read_text())
            if saved.get("digest") == digest(cells):
                return saved["results"]
        self.log.info("Running the checks of %s", student)
        isolation.require(self.sandbox)  # raises SandboxUnavailable: nbgrader reports it for this submission
        training = TrainingRunSettings.from_config(self.config)
        return {grade_id: vars(result) for grade_id, result in grade_cells(cells, self.limits, training).items()}

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        results = self._results(nb, resources["nbgrader"]["student"])
        hide = ClearHiddenTests(parent=self)
        for cell in nb.cells:
            nbgrader = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not nbgrader.get("grade"):
                continue
            if hide._remove_hidden_test_region(cell):
                cell.source = cell.source.rstrip("\n") + "\n" + HIDDEN_NOTE
            result = results.get(nbgrader.get("grade_id"))
            cell.execution_count = None
            if nbgrader.get("grade_id") in NOT_GRADED:
                cell.outputs = [new_output("stream", name="stdout", text=NOT_GRADED[nbgrader["grade_id"]] + "\n")]
            elif result is None:
                cell.outputs = [new_output("error", ename="NotGraded", evalue="no check is registered for this cell",
                                           traceback=["NotGraded: no check is registered for this cell"])]
            elif result["passed"]:
                note = "" if result["message"] == "passed" else f": {result['message']}"
                cell.outputs = [new_output("stream", name="stdout", text=f"passed{note} ({result['seconds']:.1f} s)\n")]
            else:
                cell.outputs = [new_output("error", ename="CheckFailed", evalue=result["message"],
                                           traceback=[f"CheckFailed: {result['message']}"])]
        return nb, resources


class KeepManualGrades(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, except that a regrade leaves a hand-graded cell graded.

    nbgrader marks every cell with a manual score "needs manual grade" again on each autograde, so after a regrade
    the formgrader shows every hand-graded submission as ungraded. Here a cell with a manual score keeps it and
    stays graded, unless its answer changed since the last autograde (a new submission): then it needs a manual
    grade again, until the formgrader saves one. A written answer is its own cell; the answer of a test cell whose
    score was overridden is every answer cell of the notebook (and the test). The answers each autograde saw are
    recorded per student (digests, of the cells as the formgrader shows them) in ``record_directory``. The auto
    scores update as before. A notebook's grades and comments are written in one transaction (nbgrader commits
    after every cell: dozens of disk syncs per notebook on SQLite).
    """

    record_directory = Unicode("", help="Folder of the graded cells' answers as last autograded, one JSON per "
                               "assignment and student (default: <CourseDirectory.root>/graded_answers)").tag(
        config=True)

    def _record_path(self) -> Path:
        folder = self.record_directory or os.path.join(self.config.CourseDirectory.get("root") or os.getcwd(),
                                                       "graded_answers")
        return Path(folder) / self.assignment_id / f"{self.notebook_id}--{self.student_id}.json"

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.student_id = resources["nbgrader"]["student"]
        path = self._record_path()
        try:
            self._earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            self._earlier = {}
        self._now: dict = {"answers": {}, "review": []}
        code_answers = [c.source for c in nb.cells if c.cell_type == "code" and utils.is_solution(c)]
        self._code_answers = json.dumps(code_answers)
        nb, resources = self._save_grades(nb, resources)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self._now, indent=1) + "\n")
        os.replace(partial, path)
        return nb, resources

    def _save_grades(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        """``SaveAutoGrades.preprocess``, committing once at the end instead of after each cell."""
        self.db_url = resources["nbgrader"]["db_url"]
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            session = self.gradebook.db
            self.gradebook.db = _CommitAtEnd(session)
            try:
                nb, resources = super(SaveAutoGrades, self).preprocess(nb, resources)
            finally:
                self.gradebook.db = session
            session.commit()
        return nb, resources

    def _add_score(self, cell: NotebookNode, resources: ResourcesDict) -> None:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
        was_pending = grade.needs_manual_grade
        super()._add_score(cell, resources)   # the auto score, and nbgrader's "needs manual grade"
        graded = cell.source if utils.is_solution(cell) else json.dumps([cell.source, self._code_answers])
        answer = hashlib.sha256(graded.encode()).hexdigest()
        if grade.manual_score is not None:
            earlier = self._earlier.get("answers", {}).get(grade_id)
            changed = earlier is not None and earlier != answer
            review = changed or (was_pending and grade_id in self._earlier.get("review", []))
            grade.needs_manual_grade = review
            self.gradebook.db.commit()
            if review:
                self._now["review"].append(grade_id)
                self.log.warning("the answer %s grades (student %s) changed since it was hand-graded: it needs a "
                                 "manual grade again", grade_id, self.student_id)
        self._now["answers"][grade_id] = answer


class _CommitAtEnd:
    """A gradebook session whose ``commit()`` only flushes (the caller commits once, on the session itself)."""

    def __init__(self, session) -> None:
        self._session = session

    def commit(self) -> None:
        self._session.flush()

    def __getattr__(self, name: str):
        return getattr(self._session, name)


class KeepPlainOutputs(NbGraderPreprocessor):
    """nbgrader's ClearOutput, except that the student's own results stay in the cells that are not graded.

    A hand-grader scores the written answers' "use of the student's own numbers", so the exercise tables (and
    every other ungraded cell's printed text and PNG figures) stay in the autograded copy and the feedback. Only
    inert kinds stay: stdout and ``text/plain``/``image/png`` data; HTML, SVG and JavaScript (which would run
    in the formgrader's page), stderr and errors go. Graded cells are cleared: their outputs are the grader's.
    """

    kept_mimetypes = ("text/plain", "image/png")

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if cell.cell_type != "code":
            return cell, resources
        graded = cell.metadata.get("nbgrader", {}).get("grade") or cell.metadata.get("nbgrader", {}).get("solution")
        kept = [] if graded else [self._plain(output) for output in cell.get("outputs", [])]
        cell.outputs = [output for output in kept if output is not None]
        cell.execution_count = None
        return cell, resources

    def _plain(self, output: NotebookNode) -> NotebookNode | None:
        if output.get("output_type") == "stream":
            return new_output("stream", name="stdout", text=str(output.get("text", ""))) \
                if output.get("name") == "stdout" else None
        if output.get("output_type") in ("execute_result", "display_data"):
            data = {key: value for key, value in output.get("data", {}).items() if key in self.kept_mimetypes}
            if "image/png" in data and not _is_base64(data["image/png"]):
                del data["image/png"]
            return new_output("display_data", data=data) if data else None
        return None


def _is_base64(text) -> bool:
    import base64
    import binascii
    try:
        base64.b64decode("".join(text) if isinstance(text, list) else str(text), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False
