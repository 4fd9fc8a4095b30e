"""The class report (autograder/course/class_report.py) of a real batch: its numbers are grades.csv's, the known
mistakes are named, no check input or student markup gets through, and a headless Chromium shows it whole."""
import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from PIL import Image

import attacks
from autograder.checks import mistakes
from autograder.class_report import main
from autograder.course.class_report import FIGURES, REPORT, read_report, write_report
from autograder.grade import Row, grade, write_outputs
from autograder.boundary.sandbox import Limits
from corpus import CORPUS, POINTS, ROOT, Submission, build, write_corpus

LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
BY_NAME = {s.name: s for s in CORPUS}
# Two plain-folder files that become the same student id: both get an error row under their own file name, so a
# file name a student chose (markup included) reaches grades.csv and the report.
HOSTILE = '<img src=x onerror="window.pwned=1">.ipynb'
COLLIDER = "img src=x onerror=window.pwned=1.ipynb"
BATCH = [BY_NAME["reference"], BY_NAME["train_no_zero_grad"],
         Submission("zero_grad_again", "the same mistake again", cells=dict(BY_NAME["train_no_zero_grad"].cells)),
         BY_NAME["train_same_view"], BY_NAME["probe_not_frozen"], BY_NAME["loss_tau_multiplied"]]
NAMED = {"train_no_zero_grad": 2, "train_same_view": 1, "probe_not_frozen": 1, "loss_tau_multiplied": 1}


@pytest.fixture(scope="module")
def grades(tmp_path_factory) -> Path:
    """The grades folder of a real batch (six submissions and two refused files), graded by the grade command."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    write_corpus(root / "incoming", BATCH)
    for name in (HOSTILE, COLLIDER):
        (root / "incoming" / name).write_text(build(BY_NAME["reference"]))
    grade(root / "incoming", root=root, workers=2, limits=LIMITS)
    return root / "grades"


def csv_rows(grades: Path) -> list[dict]:
    with open(grades / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


def page(grades: Path) -> BeautifulSoup:
    return BeautifulSoup((grades / REPORT).read_text(), "html.parser")


def table(soup: BeautifulSoup, table_id: str) -> list[list[str]]:
    return [[cell.get_text(" ", strip=True) for cell in tr.find_all("td")] for tr in soup.select(f"#{table_id} tbody tr")]


def test_the_grade_command_writes_the_report_with_the_numbers_of_grades_csv(grades):
    rows = csv_rows(grades)
    graded = [r for r in rows if r["status"] == "graded"]
    scores = [float(r["score"]) for r in graded]
    assert len(rows) == len(BATCH) + 2 and len(graded) == len(BATCH)
    soup = page(grades)
    assert soup.select_one("#students").get_text(strip=True) == str(len(rows))
    assert soup.select_one("#graded").get_text(strip=True) == str(len(graded))
    assert soup.select_one("#not-graded").get_text(strip=True) == "2"
    assert soup.select_one("#score-mean-median").get_text(strip=True).startswith(
        f"{statistics.fmean(scores):.2f} / {statistics.median(scores):g} of ")
    assert soup.select_one("#score-range").get_text(strip=True) == f"{min(scores):g} / {max(scores):g}"
    passed_all = sum(all(float(r[g]) == points for g, points in POINTS.items()) for r in graded)
    assert soup.select_one("#all-passed").get_text(strip=True) == str(passed_all) == "1"
    # each check's pass rate, counted here from the CSV's points and the corpus's own points per cell
    expected = {g: [str(sum(float(r[g]) == points for r in graded)), str(len(graded))] for g, points in POINTS.items()}
    assert {line[0]: line[2:4] for line in table(soup, "checks")} == expected
    for student in ("zero_grad_again", "train_same_view"):
        assert float(next(r for r in graded if r["student"] == student)["test_train_epoch_hidden"]) == 0

    # every figure is a PNG next to the page, linked relatively, holding the same numbers
    assert [img["src"] for img in soup.find_all("img")] == list(FIGURES.values())
    numbers = {key: json.loads(Image.open(grades / name).text["Description"]) for key, name in FIGURES.items()}
    assert sorted(numbers["scores"]["scores"]) == sorted(scores)
    assert numbers["checks"]["checks"] == {g: [int(p), int(n)] for g, (p, n) in expected.items()}
    assert [n for *_, n in numbers["mistakes"]["mistakes"]] == [int(line[2]) for line in table(soup, "mistakes")][:12]


def test_the_known_mistakes_are_named_and_counted_once_per_student(grades):
    listed = {line[0]: int(line[2]) for line in table(page(grades), "mistakes")}
    assert listed == {mistakes.BY_ID[i].title: n for i, n in NAMED.items()}, listed
    per_student = {line[0]: line[2] for line in table(page(grades), "per-student")}
    assert per_student["reference"] == "-"
    assert per_student["zero_grad_again"] == mistakes.BY_ID["train_no_zero_grad"].title


def test_no_check_input_or_expected_value_reaches_the_report(grades):
    text = page(grades).get_text(" ")
    shown = 0
    for record in grades.glob("*.json"):
        cells = json.loads(record.read_text()).get("cells", {}) if record.name != "grader-code.json" else {}
        for cell in cells.values():
            first = cell.get("message", "").split("\n")[0]
            if any(ch.isdigit() for ch in first):
                shown += 1
                assert first not in text, f"{record.name}: {first!r} is in the report"
    assert shown >= 1   # the tau-multiplied loss's message holds the visible check's N, tau and values


def test_student_markup_is_shown_as_text(grades):
    html = (grades / REPORT).read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=" in html
    assert HOSTILE in page(grades).get_text(" ")


def test_a_message_with_markup_is_escaped_and_masked(tmp_path):
    # the grade command's own writer; a failure no rule names is shown by its check and masked first line
    hostile = '<b onmouseover="x()">'
    row = Row(hostile, score=20.0, max_score=22.0, cells={
        "test_nt_xent": {"points": 0.0, "max": 2.0, "message": "<script>window.pwned=1</script> got 0.25\nmore"},
        "test_linear_probe": {"points": 2.0, "max": 2.0, "message": "passed"}})
    write_outputs({hostile: row}, tmp_path)
    html = write_report(tmp_path).read_text()
    assert "<script>window" not in html and "&lt;script&gt;window.pwned=#&lt;/script&gt; got #" in html
    assert hostile not in html and "&lt;b onmouseover=&#34;x()&#34;&gt;" in html
    report = read_report(tmp_path)
    assert [(c.grade_id, c.passed, c.graded) for c in report.checks if c.graded] == [
        ("test_nt_xent", 0, 1), ("test_linear_probe", 1, 1)]


def test_a_folder_without_grades_is_refused_with_what_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit, match="grades.csv cannot be read.*autograder.grade"):
        main([str(tmp_path)])
    (tmp_path / "grades.csv").write_text("student,status,score,max_score,manual_pending,test_nt_xent,error\n"
                                         "alice,graded,2,2,0,2,\n")
    with pytest.raises(SystemExit, match="alice.json cannot be read.*grade again"):
        main([str(tmp_path)])


def test_unnamed_failures_keep_no_number_and_no_student_text():
    assert mistakes.unnamed_key("loss -0.5 differs from the formula's 3.455364 (N=13, D=2, tau=0.05)") == \
        "loss # differs from the formula's # (N=#, D=#, tau=#)"
    assert mistakes.unnamed_key("nt_xent raised ValueError: my secret 42\nTraceback") == "nt_xent raised ValueError"
    assert len(mistakes.unnamed_key("x" * 500)) == mistakes.UNNAMED_LENGTH
    assert len(mistakes.BY_ID) == len(mistakes.MISTAKES)


def _launch(playwright):
    """playwright's own Chromium, else the system's; None where neither starts."""
    from playwright.sync_api import Error
    problems = []
    for options in ({}, {"executable_path": shutil.which("chromium") or shutil.which("chromium-browser")}):
        if "executable_path" in options and not options["executable_path"]:
            continue
        try:
            return playwright.chromium.launch(**options), ""
        except Error as error:
            problems.append(str(error).splitlines()[0])
    return None, "; ".join(problems)


def test_in_a_headless_browser_the_report_shows_its_numbers_and_runs_nothing(grades):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        browser, problem = _launch(playwright)
        if browser is None:
            pytest.skip(f"no Chromium for playwright here (playwright install chromium, or apt-get install chromium): "
                        f"{problem}")
        try:
            tab = browser.new_page()
            errors = []
            tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto((grades / REPORT).as_uri())
            tab.wait_for_load_state("load")
            assert tab.inner_text("h1") == "Class report"
            assert tab.locator("h2").all_inner_texts() == ["Summary", "Score distribution", "Pass rate per check",
                                                          "Most common mistakes", "Not graded", "Students"]
            assert tab.inner_text("#students") == str(len(csv_rows(grades)))
            widths = tab.evaluate("[...document.images].map(image => image.complete ? image.naturalWidth : 0)")
            assert len(widths) == len(FIGURES) and all(w > 0 for w in widths), widths
            assert HOSTILE in tab.inner_text("#errors")
            assert tab.evaluate("window.pwned === undefined && document.scripts.length === 0")
            title = mistakes.BY_ID["train_no_zero_grad"].title
            assert tab.locator("#mistakes tr", has_text=title).locator("td").nth(2).inner_text() == "2"
            assert errors == []
        finally:
            browser.close()
