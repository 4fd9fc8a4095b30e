"""Results for CI (issue 21, parts 2 and 3): junit.xml and summary.md next to grades.csv, the step summary, the
exit status, the progress output, and the example workflow of a course's private grading repository."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import mistune
import pytest
import yaml
from bs4 import BeautifulSoup
from junitparser import Error, Failure, JUnitXml, Skipped

import attacks
import autograder.grade
from autograder.course import ci_results
from autograder.course.progress import BatchProgress
from autograder.course.examples import filled_release, solutions
from autograder.grade import EXIT_GRADED, EXIT_NOT_ALL_GRADED, EXIT_NOT_RUN, Row, main
from autograder.boundary.sandbox import Limits
from autograder.course.submissions import student_id

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
WORKFLOW = ROOT / "examples" / "github-grading" / ".github" / "workflows" / "grade.yml"

# What a student's code can put into a check's message, the table's student column and the CI pages.
HOSTILE = ("]]></failure><script>alert(1)</script>\x00\x1b[31m | a | b |\n| --- | --- |\n"
           "<img src=x onerror=alert(1)> [click](javascript:alert(1)) www.example.com ``tick`` & \u202eevil")
HOSTILE_FILE = "evil\n|<img src=x onerror=alert(1)>`[a](javascript:b)`.ipynb"   # refused: its id has a twin
TWIN_FILE = student_id(Path(HOSTILE_FILE).stem) + ".ipynb"
RAISES = f"def nt_xent(z_i, z_j, temperature=0.5):\n    raise ValueError({HOSTILE!r})\n"


def github_markdown(text: str) -> BeautifulSoup:
    """``text`` rendered as GitHub renders a step summary (tables, bare URLs linked, raw HTML kept), parsed."""
    render = mistune.create_markdown(escape=False, plugins=["table", "url", "strikethrough"])
    return BeautifulSoup(render(text), "html.parser")


def assert_nothing_of_theirs_renders(page: BeautifulSoup) -> None:
    """No element a student's text could add: links, images, scripts, raw HTML; every table row as wide as its head."""
    assert not page.find_all(["a", "img", "script", "iframe", "svg", "b", "strong", "em"]), page
    for table in page.find_all("table"):
        width = len(table.find("thead").find_all("th"))
        assert all(len(tr.find_all("td")) == width for tr in table.find("tbody").find_all("tr")), table


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One real batch through the command line: a submission whose nt_xent raises a hostile message (its other
    answers correct), the release untouched, and two files refused because they would share a student id (one
    with a hostile name); $GITHUB_STEP_SUMMARY set, output not a terminal."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    incoming = root / "incoming"
    incoming.mkdir()
    (incoming / "hostile.ipynb").write_text(json.dumps(filled_release({**solutions(), "nt_xent": RAISES})))
    (incoming / "untouched.ipynb").write_text((ROOT / "release" / "simclr" / "simclr_lab.ipynb").read_text())
    for name in (HOSTILE_FILE, TWIN_FILE):
        (incoming / name).write_text((ROOT / "release" / "simclr" / "simclr_lab.ipynb").read_text())
    step_summary = root / "step-summary.md"
    step_summary.write_text("earlier step\n")
    argv = [str(incoming), "--root", str(root), "--workers", "1",
            *(["--unsafe-no-sandbox"] if LIMITS.sandbox == "none" else [])]
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autograder.grade, "course_limits", lambda *args, **kwargs: LIMITS)
        patch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    grades = root / "grades"
    with open(grades / "grades.csv", newline="") as file:
        table = {line["student"]: line for line in csv.DictReader(file)}
    return {"status": status, "out": out.getvalue(), "err": err.getvalue(), "grades": grades, "csv": table,
            "step_summary": step_summary.read_text(), "root": root}


def test_the_batch_exits_1_when_a_submission_could_not_be_graded(batch):
    refused = [name for name, line in batch["csv"].items() if line["status"] == "error"]
    assert batch["status"] == EXIT_NOT_ALL_GRADED == 1, batch["err"][-3000:]
    assert len(refused) == 2 and batch["csv"]["hostile"]["status"] == batch["csv"]["untouched"]["status"] == "graded"
    assert "2 of 4 submissions could not be graded" in batch["err"], batch["err"][-3000:]


def test_junit_has_a_testcase_per_graded_cell_with_the_points_of_grades_csv(batch):
    xml = JUnitXml.fromfile(str(batch["grades"] / ci_results.JUNIT))
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == set(batch["csv"]), "one testsuite per row of grades.csv"
    for student in ("hostile", "untouched"):
        line = batch["csv"][student]
        cases = {case.name: case for case in suites[student]}
        cells = [name for name in line if name.startswith("test_")]
        unscored = {g for g, c in json.loads((batch["grades"] / f"{student}.json").read_text())["cells"].items()
                    if not c["max"]}   # the 0-point self-check, which the grader never runs
        assert set(cases) == {*cells, ci_results.WRITTEN, *unscored} and unscored == {"self_check"}
        assert all(cases[g].is_skipped for g in unscored)
        for name in cells:
            properties = _properties(cases[name])
            assert float(properties["points"]) == float(line[name] or 0), (student, name, properties)
            assert cases[name].is_passed == (float(properties["points"]) == float(properties["max_points"]))
        written = _properties(cases[ci_results.WRITTEN])
        code = sum(float(line[name] or 0) for name in cells)
        assert float(written["points"]) == pytest.approx(float(line["score"]) - code)
    assert suites["hostile"].tests == len(cells) + 2
    assert suites["hostile"].time == json.loads((batch["grades"] / "hostile.json").read_text())["seconds"] > 0
    assert suites["untouched"].failures >= len(cells), "the release as handed out passes a test cell"


def _properties(case) -> dict[str, str]:
    properties = case._elem.find("properties")
    return {p.get("name"): p.get("value") for p in properties.iter("property")}


def test_a_hostile_message_is_the_failure_text_and_cannot_break_the_xml(batch):
    raw = (batch["grades"] / ci_results.JUNIT).read_bytes()
    tree = ElementTree.fromstring(raw)   # a strict parser: any character XML cannot hold would stop it
    assert tree.find(".//script") is None and tree.find(".//img") is None
    hostile = next(s for s in JUnitXml.fromstring(raw.decode()) if s.name == "hostile")
    failed = {case.name: case.result[0] for case in hostile if case.result and isinstance(case.result[0], Failure)}
    assert "test_nt_xent" in failed and "test_get_augmentations" not in failed, sorted(failed)
    message = failed["test_nt_xent"].message
    assert "]]></failure><script>alert(1)</script>" in message and "\\x00\\x1b[31m" in message, message
    assert "\x00" not in message and "\x1b" not in message
    assert message in failed["test_nt_xent"].text


def test_a_submission_not_graded_is_one_testcase_with_an_error(batch):
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(batch["grades"] / ci_results.JUNIT))}
    refused = [name for name, line in batch["csv"].items() if line["status"] == "error"]
    for name in refused:
        (case,) = list(suites[name])
        (error,) = case.result
        assert isinstance(error, Error) and error.message == ci_results.xml_text(batch["csv"][name]["error"])
        assert "become student id" in error.message


def test_the_summary_counts_failures_and_renders_nothing_of_the_students(batch):
    summary = (batch["grades"] / ci_results.SUMMARY).read_text()
    assert batch["step_summary"] == "earlier step\n" + summary, "the summary was not appended to the step summary"
    assert "2 graded, 2 not graded;" in summary
    page = github_markdown(summary)
    assert_nothing_of_theirs_renders(page)
    codes = [code.get_text() for code in page.find_all("code")]
    assert any("<img src=x onerror=alert(1)>" in text for text in codes), codes
    failures = next(t for t in page.find_all("table") if t.find("th").get_text() == "test cell")
    counted = {tr.find("td").get_text(): int(tr.find_all("td")[2].get_text()) for tr in failures.find("tbody")("tr")}
    lost = {name: sum(float(batch["csv"][s][name] or 0) < float(_max_points(batch, s, name)) for s in
                      ("hostile", "untouched")) for name in counted}
    assert counted == lost and counted["test_nt_xent"] == 2, counted
    assert set(counted) == {name for name in batch["csv"]["hostile"] if name.startswith("test_")}


def _max_points(batch, student: str, grade_id: str) -> float:
    return json.loads((batch["grades"] / f"{student}.json").read_text())["cells"][grade_id]["max"]


def test_one_plain_line_per_submission_when_not_on_a_terminal(batch):
    lines = [line for line in batch["out"].splitlines() if re.match(r"\s+\[\d+/\d+", line)]
    assert len(lines) == 2, batch["out"]
    for number, line in enumerate(lines, 1):
        match = re.fullmatch(rf"   \[{number}/2(, \d\d:\d\d left)?\] (\w+): (\d+)/(\d+) checks passed \((\d+\.\d) s\)",
                             line)
        assert match, line
        student = match.group(2)
        checks = json.loads((batch["grades"] / "checks" / f"{student}.json").read_text())["results"]
        assert int(match.group(3)) == sum(r["passed"] for r in checks.values()) and int(match.group(4)) == len(checks)
        assert bool(match.group(1)) == (number < 2), "time left shown while some remain, and only then"
    assert "\r" not in batch["out"] + batch["err"], "a progress bar was drawn into a log"
    assert re.search(r"checks done in \d+\.\d s", batch["out"]) and "nbgrader done in" in batch["out"], \
        "a line bench/grading.py reads is gone"


# --- the writers on their own ------------------------------------------------------------------------------

def _rows() -> list[Row]:
    hostile = HOSTILE + "\ud800"   # a lone surrogate: cannot even be encoded as UTF-8
    return [Row("alice", score=3, max_score=8, manual_pending=1,
                cells={"test_nt_xent": {"points": 0.0, "max": 2.0, "message": hostile},
                       "test_nt_xent_hidden": {"points": 2.0, "max": 2.0, "message": "passed"}}),
            Row(hostile, status="error", error=hostile)]


def test_junit_of_hostile_text_round_trips_as_text(tmp_path):
    ci_results.write(_rows(), tmp_path)
    tree = ElementTree.parse(tmp_path / ci_results.JUNIT)
    assert tree.find(".//script") is None
    xml = JUnitXml.fromfile(str(tmp_path / ci_results.JUNIT))
    alice, other = list(xml)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (4, 1, 1, 1)
    nt_xent, hidden, written = list(alice)
    assert isinstance(nt_xent.result[0], Failure) and hidden.is_passed and isinstance(written.result[0], Skipped)
    assert nt_xent.result[0].message == ci_results.xml_text(HOSTILE + "\ud800")
    assert nt_xent.result[0].message.endswith("\u202eevil\\ud800")
    assert _properties(written) == {"points": "1", "max_points": "4", "manual_pending": "1"}
    assert other.name == ci_results.xml_text(HOSTILE + "\ud800") and list(other)[0].is_error


def test_summary_of_hostile_text_renders_as_code_only(tmp_path):
    summary = ci_results.summary(_rows())
    page = github_markdown(summary)
    assert_nothing_of_theirs_renders(page)
    assert "\x00" not in summary and "\u202e" not in summary and "\ud800" not in summary
    assert "1 graded, 1 not graded" in summary
    fenced = ci_results.code_span("a `b` ``c``")
    assert fenced == "``` a `b` ``c`` ```" and github_markdown(fenced).code.get_text() == "a `b` ``c``"
    long = ci_results.code_span("x" * 1000)
    assert len(long) < ci_results.MARKDOWN_LIMIT + 20 and "…" in long


def test_the_step_summary_only_when_github_sets_it(tmp_path):
    assert ci_results.append_step_summary("x", {}) is None
    target = tmp_path / "summary"
    assert ci_results.append_step_summary("a\n", {"GITHUB_STEP_SUMMARY": str(target)}) == target
    ci_results.append_step_summary("b\n", {"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "a\nb\n"
    long = "".join(f"| `s{i}` | graded |\n" for i in range(1000))
    ci_results.append_step_summary(long, {"GITHUB_STEP_SUMMARY": str(target)}, limit=2000)
    appended = target.read_text()[len("a\nb\n"):]
    assert len(appended.encode()) <= 2000 and appended.endswith(ci_results.CUT)
    assert long.startswith(appended.removesuffix(ci_results.CUT)) and appended.count("\n") > 10


# --- progress ----------------------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_mode_writes_one_line_per_submission():
    out, err = io.StringIO(), io.StringIO()
    with BatchProgress(3, "auto", out, err) as progress:
        progress.advance("a", "12/12 checks passed", 1.25)
        progress.advance("b", "not graded: its grading process died", 3.0, graded=False)
        progress.advance("c", "0/12 checks passed", 0.5)
    lines = out.getvalue().splitlines()
    assert [re.sub(r", \d\d:\d\d left", "", line) for line in lines] == [
        "   [1/3] a: 12/12 checks passed (1.2 s)", "   [2/3] b: not graded: its grading process died (3.0 s)",
        "   [3/3] c: 0/12 checks passed (0.5 s)"]
    assert all(", " in line and "left]" in line for line in lines[:2]) and err.getvalue() == ""


def test_a_terminal_gets_a_bar_with_done_total_rate_and_time_left():
    out, err = Terminal(), Terminal()
    with BatchProgress(2, "auto", out, err) as progress:
        progress.advance("a", "12/12 checks passed", 1.0)
        drawn = err.getvalue()
        progress.advance("b", "not graded: over its budget", 2.0, graded=False)
    assert re.search(r"grading:\s+50%.*\| 1/2 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(s/submission|submission/s)\]", drawn), drawn
    assert "2/2" in err.getvalue()
    assert "a:" not in out.getvalue() and "[2/2] b: not graded: over its budget" in out.getvalue(), \
        "on a terminal only the submissions not graded get a line"


def test_the_bar_can_be_forced_and_a_log_still_gets_every_line():
    out, err = io.StringIO(), io.StringIO()
    with BatchProgress(2, "bar", out, err) as progress:
        progress.advance("a", "12/12 checks passed", 1.0)
        progress.advance("b", "11/12 checks passed", 1.0)
    assert "2/2" in err.getvalue() and "\r" in err.getvalue()
    assert len(out.getvalue().splitlines()) == 2
    with pytest.raises(ValueError, match="use one of auto, bar, lines"):
        BatchProgress(1, "fancy")


# --- exit status -------------------------------------------------------------------------------------------

@pytest.fixture
def fake_grade(monkeypatch, tmp_path):
    """``main`` with ``grade`` replaced: it writes the rows it is given as the real one does, into tmp_path."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    given = {}

    def fake(*args):
        given["args"] = args
        if isinstance(given["rows"], BaseException):
            raise given["rows"]
        autograder.grade.write_outputs(given["rows"], tmp_path)
        return given["rows"]
    monkeypatch.setattr(autograder.grade, "grade", fake)

    def run(rows, *options):
        given["rows"] = rows
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(tmp_path), "--out", str(tmp_path), *options])
        return status, given.get("args"), out.getvalue(), err.getvalue()
    return run


def test_exit_0_when_every_submission_was_graded_whatever_the_scores(fake_grade):
    rows = {"a": Row("a", score=0, max_score=28), "b": Row("b", score=28, max_score=28)}
    status, args, out, _ = fake_grade(rows, "--progress", "lines")
    assert status == EXIT_GRADED == 0 and args[10] == "lines"
    assert "junit.xml" in out and "summary.md" in out


def test_exit_1_when_one_could_not_be_graded(fake_grade):
    rows = {"a": Row("a"), "b": Row("b", status="error", error="not graded: its grading process died")}
    status, _, _, err = fake_grade(rows)
    assert status == EXIT_NOT_ALL_GRADED == 1 and "1 of 2 submissions could not be graded" in err


def test_exit_2_when_nothing_was_graded(fake_grade, tmp_path, monkeypatch):
    status, _, _, err = fake_grade({})
    assert status == EXIT_NOT_RUN == 2 and "no submission found" in err
    step_summary = tmp_path / "step"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    status, _, _, err = fake_grade(SystemExit("not grading: no sandbox can be made here <img src=x>"))
    assert status == 2 and "no sandbox can be made here" in err
    assert_nothing_of_theirs_renders(github_markdown(step_summary.read_text()))
    assert "Grades: not graded" in step_summary.read_text()
    status, _, _, err = fake_grade(RuntimeError("the grader's own bug"))
    assert status == 2 and "Traceback" in err and "RuntimeError: the grader's own bug" in err


def test_exit_2_from_the_command_for_a_bad_option_or_set_up(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_STEP_SUMMARY", None)
    bad_option = subprocess.run([sys.executable, "-m", "autograder.grade", "--no-such-option"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=300)
    assert bad_option.returncode == 2 and "unrecognized arguments" in bad_option.stderr
    unreachable = subprocess.run([sys.executable, "-m", "autograder.grade", str(tmp_path), "--out", str(tmp_path / "g"),
                                  "--db", "postgresql://grader:secret@127.0.0.1:9/none"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=300)
    assert unreachable.returncode == 2, unreachable.stderr[-3000:]
    assert "cannot open the gradebook" in unreachable.stderr and not (tmp_path / "g").exists()


# --- the example workflow ----------------------------------------------------------------------------------

def _workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))   # YAML 1.1 reads the key `on` as true
    return workflow


def test_the_workflow_is_valid_for_github():
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                              str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "grade.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"))
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                              str(broken)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1 and "runs_on" in checked.stdout + checked.stderr


def test_the_workflow_sets_up_with_the_readme_command_grades_submitted_and_keeps_the_grades():
    workflow = _workflow()
    assert workflow["on"]["push"]["paths"] == ["submitted/**"] and "workflow_dispatch" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert uses == ["actions/checkout", "actions/setup-python", "actions/upload-artifact"]
    runs = [step["run"] for step in steps if "run" in step]
    assert "bash setup.sh --setup-only" in runs, "not the README's set-up command"
    assert "--setup-only" in (ROOT / "setup.sh").read_text() and "bash setup.sh --setup-only" in \
        (ROOT / "README.md").read_text()
    order = [step.get("uses", step.get("run")) for step in steps]
    setup = order.index("bash setup.sh --setup-only")
    grading = next(i for i, s in enumerate(order) if "autograder.grade" in s)
    assert order[0].startswith("actions/checkout") and setup < grading < len(order) - 1
    keep = steps[-1]
    assert keep["if"] == "always()" and keep["with"]["path"] == "grades/", "the grades are lost when a run fails"


@pytest.mark.parametrize("gradebook_url", ["", "postgresql://grader:pw@db.example:5432/simclr"])
def test_the_workflow_grade_command_is_the_grade_command_line(gradebook_url, monkeypatch):
    """The run line as bash expands it on the runner, fed to the grade command's own parser."""
    (job,) = _workflow()["jobs"].values()
    step = next(step for step in job["steps"] if "autograder.grade" in step.get("run", ""))
    assert step["env"] == {"GRADEBOOK_URL": "${{ secrets.GRADEBOOK_URL }}"}
    words = subprocess.run(["bash", "-c", 'print_words() { printf "%s\\0" "$@"; }; print_words ' + step["run"]],
                           env={"GRADEBOOK_URL": gradebook_url, "PATH": os.environ["PATH"]},
                           capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert words[:3] == [".venv/bin/python", "-m", "autograder.grade"], words
    assert shlex.split(step["run"])[0] == ".venv/bin/python"
    calls = []
    monkeypatch.setattr(autograder.grade, "grade", lambda *args: calls.append(args) or {})
    with contextlib.redirect_stderr(io.StringIO()):
        main(words[3:])
    (args,) = calls
    assert args[0] == Path("submitted") and args[4] == (gradebook_url or None)
