"""Nothing a student writes in markdown or raw cells runs in the formgrader's page or the feedback (issue 19, E).

Each page is parsed (``html.parser``) and compared with the same page made from the untouched release: no
``<script>``, ``<iframe>``, ``<svg>``... beyond the template's own, no ``on*`` attribute, no ``javascript:`` (or
``vbscript:``, or non-image ``data:``) URL, no script holding the payloads' marker. Each test first checks that
the unsanitised notebook does carry the attack into the page, so it fails when the protection is off.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter
from nbformat.v4 import new_markdown_cell, new_raw_cell
from traitlets.config import Config

from autograder.grade import ASSIGNMENT, NOTEBOOK, course_config, feedback_template_options
from autograder.course.nbgrader_commands import nbgrader
from autograder.nbgrader_ext.sanitize import SanitizeCells, sanitize_markdown

ROOT = Path(__file__).resolve().parent.parent
MARKER = "PWNED"    # every payload adds a word with it to document.title
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SVG = base64.b64encode(f"<svg xmlns='http://www.w3.org/2000/svg' onload=\"document.title+=' {MARKER}-svg-attachment'\">"
                       f"<script>document.title+=' {MARKER}-svg-script'</script></svg>".encode()).decode()
LATEX_ANSWER = "The run without colour jitter lost the most accuracy ($\\tau = 0.2$, 45.2 % < 48.6 %)."

WRITTEN_ATTACK = f"""My answer: colour jitter matters most.

<script>document.title+=' {MARKER}-script'</script>
<img src=x onerror="document.title+=' {MARKER}-img'">
<a href="javascript:document.title+=' {MARKER}-link'">see my figure</a> and
<svg onload="document.title+=' {MARKER}-svg'"><circle r="4"/></svg>
<iframe srcdoc="<script>parent.document.title+=' {MARKER}-iframe'</script>"></iframe>
<details open ontoggle="document.title+=' {MARKER}-details'"><summary>more</summary>hidden</details>
"""
MARKDOWN_ATTACK = f"""A note of mine, with [a link](javascript:document.title+='{MARKER}-md-link') and
[a reference][r], <a href=" JaVa&#x09;ScRiPt:document.title+=' {MARKER}-entity'">an entity</a>,
<form action="javascript:document.title+=' {MARKER}-form'"><button>go</button></form>
<object data="data:text/html,<script>document.title+=' {MARKER}-object'</script>"></object>
<embed src="data:image/svg+xml;base64,{SVG}">
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<style>body {{ display: none }}</style><base href="javascript:/">
<meta http-equiv="refresh" content="0;url=javascript:document.title+=' {MARKER}-meta'">
<!-- <script>document.title+=' {MARKER}-comment'</script> -->

![inline svg](attachment:evil.svg) ![a figure](attachment:fig.png)

[r]: vbscript:msgbox("{MARKER}-vbs")
"""
RAW_ATTACK = (f"<script>document.title+=' {MARKER}-raw'</script>"
              f"<img src=x onerror=\"document.title+=' {MARKER}-raw-img'\">")
DANGEROUS_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "form",
                  "input", "button", "base", "meta", "link", "style", "template", "noscript"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background", "srcdoc",
                  "content", "cite"}
DANGEROUS_URL = re.compile(r"javascript|vbscript|data:(?!image/(png|jpeg|gif);)")


def active_content(html: str) -> Counter:
    """What in a page could run or load something: dangerous elements, handlers, dangerous URLs, the payloads'
    marker in a script or an attribute (as text it is harmless)."""
    found = Counter()
    for tag in BeautifulSoup(html, "html.parser").find_all(True):
        if tag.name in DANGEROUS_TAGS:
            found[f"<{tag.name}>"] += 1
        if tag.name == "script" and MARKER in tag.get_text():
            found["script with the payload"] += 1
        for name, value in tag.attrs.items():
            if MARKER in str(value):
                found["attribute with the payload"] += 1
            if name.lower().startswith("on"):
                found[f"{tag.name} {name}="] += 1
            for text in value if isinstance(value, list) else [value]:
                url = re.sub(r"[\x00-\x20]", "", str(text)).lower().split("url=")[-1]
                if name.lower() in URL_ATTRIBUTES and DANGEROUS_URL.match(url):
                    found[f"{tag.name} {name}={url[:20]}"] += 1
    return found


def attacked(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release with an attack in a written answer, a new markdown cell with attachments and two raw cells;
    another written answer holds ordinary markdown with LaTeX."""
    nb = copy.deepcopy(nb)
    answers = [c for c in nb.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")]
    answers[0].source = WRITTEN_ATTACK
    answers[1].source = LATEX_ANSWER
    note = new_markdown_cell(MARKDOWN_ATTACK)
    note.attachments = {"evil.svg": {"image/svg+xml": SVG}, "fig.png": {"image/png": PNG}}
    raw_html = new_raw_cell(RAW_ATTACK, metadata={"raw_mimetype": "text/html"})
    raw_plain = new_raw_cell(RAW_ATTACK.replace("raw", "raw-plain"))
    nb.cells[1:1] = [note, raw_html, raw_plain]
    return nb


def release() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)


def sanitised(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb, _ = SanitizeCells().preprocess(copy.deepcopy(nb), {"nbgrader": {"student": "mallory"}})
    return nb


def formgrader_exporter() -> HTMLExporter:
    """The exporter of nbgrader 0.9's formgrader (``FormgradeExtension``: template ``formgrade``)."""
    from nbgrader.server_extensions.formgrader import handlers
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    return HTMLExporter(config=config)


FORMGRADER_RESOURCES = {"assignment_id": ASSIGNMENT, "notebook_id": NOTEBOOK, "submission_id": "1", "index": 0,
                        "total": 1, "base_url": "", "student": "mallory", "last_name": "M", "first_name": "M",
                        "notebook_path": f"autograded/mallory/{ASSIGNMENT}/{NOTEBOOK}.ipynb"}


def formgrader_page(nb: nbformat.NotebookNode) -> str:
    return formgrader_exporter().from_notebook_node(nb, resources=copy.deepcopy(FORMGRADER_RESOURCES))[0]


def feedback_page(nb: nbformat.NotebookNode) -> str:
    """The course's feedback template (``grade --feedback``), as nbgrader generate_feedback configures it."""
    config = Config()
    for option in feedback_template_options():
        name, value = option.removeprefix("--HTMLExporter.").split("=", 1)
        if name == "extra_template_basedirs":
            config.HTMLExporter.setdefault("extra_template_basedirs", []).append(value)
        else:
            setattr(config.HTMLExporter, name, value)
    import nbgrader   # as GenerateFeedback does: bootstrap's CSS, inlined into the page
    config.HTMLExporter.extra_template_paths = [str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
                                                    / "static" / "node_modules" / "bootstrap" / "dist" / "css")]
    nb = copy.deepcopy(nb)
    for cell in nb.cells:   # what nbgrader's GetGrades adds
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.nbgrader.score = 0.0
    resources = {"nbgrader": {"notebook": NOTEBOOK, "score": 0, "max_score": 22, "late_penalty": 0}}
    return HTMLExporter(config=config).from_notebook_node(nb, resources=resources)[0]


def test_the_course_config_sanitises_last_in_autograde():
    names = list(course_config(ROOT).Autograde.sanitize_preprocessors)
    assert names[-1] == "autograder.nbgrader_ext.sanitize.SanitizeCells", names
    assert names[:-1] == ["autograder.nbgrader_ext.plugin.KeepPlainOutputs", "nbgrader.preprocessors.DeduplicateIds",
                          "nbgrader.preprocessors.OverwriteKernelspec", "nbgrader.preprocessors.OverwriteCells",
                          "nbgrader.preprocessors.CheckCellMetadata"]


@pytest.mark.parametrize("page", [formgrader_page, feedback_page], ids=["formgrader", "feedback"])
def test_no_active_content_reaches_the_page(page):
    clean = active_content(page(sanitised(release())))
    unsafe = active_content(page(attacked(release())))
    assert unsafe - clean, "the unsanitised notebook carries no attack into the page: the test shows nothing"
    assert unsafe["script with the payload"] and any(k.endswith(" onerror=") for k in unsafe)
    found = active_content(page(sanitised(attacked(release()))))
    assert found == clean, f"left in the page: {found - clean}"


def test_an_attachment_that_is_not_a_raster_image_is_dropped_and_the_page_still_renders():
    nb = sanitised(attacked(release()))
    assert nb.cells[1].attachments == {"fig.png": {"image/png": PNG}}
    html = formgrader_page(nb)    # nbconvert raises for an image of a missing attachment; the cell no longer has one
    assert f'src="data:image/png;base64,{PNG}"' in html, "the PNG attachment is no longer shown"
    assert SVG not in html


def test_raw_cells_hold_no_markup_that_runs():
    nb = sanitised(attacked(release()))
    for cell in nb.cells[2:4]:
        assert cell.cell_type == "raw"
        assert not active_content(cell.source) and "onerror" not in cell.source and "<script" not in cell.source, \
            cell.source
    assert "onerror" in attacked(release()).cells[2].source


def test_plain_markdown_and_latex_are_left_as_written():
    assert sanitize_markdown(LATEX_ANSWER) == LATEX_ANSWER
    links = "See [the paper](https://arxiv.org/abs/2002.05709), [section 3](#Section-3), ![fig](attachment:f.png)"
    assert sanitize_markdown(links, {"f.png": {"image/png": PNG}}) == links
    nb = sanitised(attacked(release()))
    assert [c.source for c in nb.cells if c.source == LATEX_ANSWER], "the LaTeX answer was rewritten"
    for folder in ("source", "release"):   # the course's own cells: the instructor's and the students' copy
        course = nbformat.read(ROOT / folder / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
        changed = [i for i, (before, after) in enumerate(zip(course.cells, sanitised(course).cells)) if before != after]
        assert changed == [], f"the cells {changed} of {folder}/ would be rewritten"


def test_a_cell_with_markup_keeps_its_look_less_what_runs():
    source = ("<b>Note</b>: $a<b$ and **more**\n\n<script>alert(1)</script>\n\n"
              "| run | acc |\n|:--|--:|\n| no jitter | 45.2 |")
    clean = sanitize_markdown(source)
    assert "\n" not in clean, "the clean HTML must stay one markdown HTML block"
    html = formgrader_page(nbformat.v4.new_notebook(cells=[new_markdown_cell(clean)]))
    body = BeautifulSoup(html, "html.parser").find(class_="text_cell_render")
    assert body.find("b").get_text() == "Note" and body.find("strong").get_text() == "more"
    assert "$a<b$" in body.get_text(), "the math is no longer MathJax's text"
    assert [td.get_text() for td in body.find_all("td")] == ["no jitter", "45.2"]
    assert body.find("td")["style"] == "text-align:left"
    assert not body.find("script") and "alert" not in body.get_text()


# --- end to end: nbgrader autograde and generate_feedback on a course folder ------------------------------------

@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course folder with two submissions (the release; the attacked release), autograded and given feedback by
    nbgrader itself with the course's config; the checks' results are written ahead, so no check runs."""
    from autograder.checks.grading import answer_cells, digest
    from autograder.checks.registry import GRADE_IDS
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    results = root / "checks"
    results.mkdir()
    for student, nb in (("honest", release()), ("mallory", attacked(release()))):
        path = root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        verdicts = {g: {"grade_id": g, "passed": False, "message": "not run in this test", "seconds": 0.0}
                    for g in GRADE_IDS}
        ahead = {"digest": digest(answer_cells(nb)), "results": verdicts}
        (results / f"{student}.json").write_text(json.dumps(ahead))
    for command in (["generate_assignment", ASSIGNMENT, "--force"],
                    ["autograde", ASSIGNMENT, "--force", f"--TrustedChecks.results_directory={results}"],
                    ["generate_feedback", ASSIGNMENT, "--force", *feedback_template_options()]):
        done = nbgrader(command, root)
        assert done.returncode == 0, f"nbgrader {command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return root


def autograded(root: Path, student: str) -> Path:
    return root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def test_the_autograded_notebook_holds_no_active_markup(course):
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    nb = nbformat.read(autograded(course, "mallory"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type in ("markdown", "raw"):
            html = markdown2html_mistune(cell.source) if cell.cell_type == "markdown" else cell.source
            assert not active_content(html), cell.source
            assert all(set(bundle) <= {"image/png", "image/jpeg", "image/gif"}
                       for bundle in cell.get("attachments", {}).values())
    assert LATEX_ANSWER in [c.source for c in nb.cells], "the ordinary written answer was rewritten"


def test_the_formgrader_page_of_the_autograded_notebook_is_clean(course):
    """Rendered as nbgrader's SubmissionHandler does: its exporter, from the autograded file."""
    pages = {s: formgrader_exporter().from_filename(str(autograded(course, s)),
                                                    resources=copy.deepcopy(FORMGRADER_RESOURCES))[0]
             for s in ("honest", "mallory")}
    assert "My answer: colour jitter matters most." in pages["mallory"]
    found, clean = active_content(pages["mallory"]), active_content(pages["honest"])
    assert found == clean, f"left in the page: {found - clean}"


def test_the_feedback_html_is_clean(course):
    pages = {s: (course / "feedback" / s / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
             for s in ("honest", "mallory")}
    assert "My answer: colour jitter matters most." in pages["mallory"]
    found, clean = active_content(pages["mallory"]), active_content(pages["honest"])
    assert found == clean, f"left in the feedback: {found - clean}"


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_in_a_browser_the_payloads_do_not_run(course, tmp_path):
    """Headless Chromium loads each page (offline: the template's CDN scripts fail) and the DOM is read back."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); the parsed-HTML tests still ran")

    def title(html: str) -> str:
        page = tmp_path / "page.html"
        page.write_text(html)
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
        return BeautifulSoup(done.stdout, "html.parser").title.get_text()

    ran = title(feedback_page(attacked(release())))
    assert {f"{MARKER}-script", f"{MARKER}-img", f"{MARKER}-svg"} <= set(ran.split()), \
        f"unsanitised, the payloads should run (title {ran!r}): the browser check shows nothing"
    feedback = (course / "feedback" / "mallory" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    formgrader = formgrader_exporter().from_filename(str(autograded(course, "mallory")),
                                                     resources=copy.deepcopy(FORMGRADER_RESOURCES))[0]
    for page in (feedback, formgrader):
        assert MARKER not in title(page)
