"""Sanitising a submission's markdown and raw cells before anything renders them (nbgrader autograde's sanitize step).

The formgrader (nbgrader's ``SubmissionHandler``) renders ``autograded/<student>/<assignment>/<notebook>.ipynb``
with nbconvert's ``HTMLExporter`` and serves the page from the instructor's Jupyter server; ``generate_feedback``
renders the same notebook. nbconvert's markdown renderer (mistune, ``escape=False``) passes the student's raw
HTML through and keeps links of any protocol, so a ``<script>``, an ``<img onerror=...>`` or a
``[link](javascript:...)`` in a written answer would run with the instructor's session. :class:`SanitizeCells`,
last of ``c.Autograde.sanitize_preprocessors``, cleans those cells in the autograded copy itself, so every page
made from it is clean.

What is kept, and why:

- A markdown cell with no HTML markup (no ``<`` followed by a letter, ``/``, ``!`` or ``?``), whose links and
  images are http(s), mailto, relative or one of its own kept attachments, stays as written, byte for byte:
  such markdown renders only to the tags the renderer makes itself, with its text escaped. Ordinary answers,
  their LaTeX and comparisons (``$\\tau = 0.2$, 45.2 % < 48.6 %``) never go through the sanitiser.
- Any other markdown cell is rendered as nbconvert renders it, that HTML is cleaned by nh3 (the Rust ``ammonia``
  sanitiser: an allowlist of tags, attributes and URL schemes), and the clean HTML becomes the cell's source,
  on one line (newlines written ``&#10;``) so that markdown passes it through as one HTML block, unchanged. It
  looks as before, less what could run: ``script`` and ``style`` go with their content; every tag not on the
  list (``iframe``, ``object``, ``embed``, ``form``, ``input``, ``svg``, ``math``, ``base``, ``meta``, ...) and
  every attribute not on it (``on*`` handlers, ``style`` except a table cell's ``text-align``, ``class``, ``id``
  except a heading's) go but their text stays; URLs keep only ammonia's schemes (no ``javascript:``,
  ``vbscript:``, ``data:`` or ``file:``), except an image's ``data:`` PNG, JPEG or GIF (the cell's attachments,
  embedded). Math stays as ``$...$`` text, which MathJax typesets in the page as before (nbconvert loads MathJax
  with its ``Safe`` extension, which refuses ``\\href{javascript:...}``).
- A raw cell with markup is cleaned by nh3 the same way, whatever its ``raw_mimetype`` (nbconvert writes raw
  cells of type ``text/html`` or of no type into the page).
- Attachments keep PNG, JPEG and GIF data that is valid base64; SVG (which can carry script), HTML and anything
  else is dropped. A markdown image of an attachment that is not kept sends the cell through the sanitiser
  (nbconvert would refuse to render the notebook for a missing attachment).

Code cells are not touched here: their source is shown highlighted (escaped) and their outputs are filtered by
``nbgrader_plugin.KeepPlainOutputs``.
"""
from __future__ import annotations

import base64
import binascii
import copy
import functools
import re

import nh3
from nbconvert.exporters.exporter import ResourcesDict
from nbconvert.filters.markdown_mistune import MISTUNE_V3, IPythonRenderer, MarkdownWithMath
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

if not MISTUNE_V3:   # mistune 2 passes link() and image() their arguments in another order than _Renderer reads
    raise ImportError("autograder.nbgrader_ext.sanitize needs mistune 3 (pip install 'mistune>=3,<4')")

RASTER_TYPES = ("image/png", "image/jpeg", "image/gif")
PLAIN_SCHEMES = frozenset({"http", "https", "mailto"})

# The start of anything HTML: a tag, an end tag, a comment, a declaration, a processing instruction, an autolink.
_MARKUP = re.compile(r"<[A-Za-z/!?]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_RASTER_DATA_URL = re.compile(r"data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=]*", re.IGNORECASE)

_ATTRIBUTES = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
for _tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
    _ATTRIBUTES.setdefault(_tag, set()).add("id")          # the renderer's heading anchors
for _tag in ("a", "img"):
    _ATTRIBUTES[_tag] = _ATTRIBUTES.get(_tag, set()) | {"title"}
for _tag in ("th", "td"):
    _ATTRIBUTES[_tag] = _ATTRIBUTES.get(_tag, set()) | {"style"}   # markdown tables' column alignment


def _compact(url: str) -> str:
    """The URL as a browser reads its scheme: ASCII whitespace and control characters dropped."""
    return "".join(ch for ch in url if ord(ch) > 0x20).lower()


def _only_raster_data(tag: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: a ``data:`` URL survives only as an image's PNG, JPEG or GIF source."""
    if not _compact(value).startswith("data:"):
        return value
    return value if tag == "img" and attribute == "src" and _RASTER_DATA_URL.fullmatch(value.strip()) else None


def clean_html(html: str) -> str:
    """``html`` with everything that could run or load active content removed (nh3, the policy above)."""
    return nh3.clean(html, attributes=_ATTRIBUTES, allowed_classes={"a": {"anchor-link"}},
                     filter_style_properties={"text-align"}, url_schemes=nh3.ALLOWED_URL_SCHEMES | {"data"},
                     attribute_filter=_only_raster_data)


def has_markup(source: str) -> bool:
    """Whether ``source`` holds anything a markdown renderer would pass on as HTML."""
    return _MARKUP.search(source) is not None


def _is_base64(data) -> bool:
    try:
        base64.b64decode("".join(data) if isinstance(data, list) else str(data), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def raster_attachments(attachments: dict) -> dict:
    """The attachments' PNG, JPEG and GIF data (valid base64 only); an attachment left with nothing is dropped."""
    kept = {}
    for name, bundle in (attachments or {}).items():
        data = {mime: value for mime, value in (bundle or {}).items() if mime in RASTER_TYPES and _is_base64(value)}
        if data:
            kept[name] = {mime: "".join(v) if isinstance(v, list) else v for mime, v in data.items()}
    return kept


class _Renderer(IPythonRenderer):
    """nbconvert's markdown renderer (as ``HTMLExporter.markdown2html`` makes it), noting each link and image URL
    and rendering an image of a missing attachment without a source where nbconvert would raise."""

    def __init__(self, attachments: dict):
        super().__init__(escape=False, attachments=attachments)
        self.urls: list[str] = []
        self.missing: list[str] = []

    def link(self, text: str, url: str, title: str | None = None) -> str:
        self.urls.append(url)
        return super().link(text, url, title)

    def image(self, text: str, url: str, title: str | None = None) -> str:
        self.urls.append(url)
        if url.startswith("attachment:") and url[len("attachment:"):] not in self.attachments:
            self.missing.append(url)
            url = ""
        return super().image(text, url, title)


def _plain_url(url: str, attachments: dict) -> bool:
    scheme = _SCHEME.match(_compact(url))
    if scheme is None:
        return True    # relative or a fragment
    if scheme.group(1) == "attachment":
        return url[len("attachment:"):] in attachments
    return scheme.group(1) in PLAIN_SCHEMES


def sanitize_markdown(source: str, attachments: dict | None = None) -> str:
    """The markdown ``source`` itself when it is plain (see the module's docstring), else its rendering cleaned by
    nh3, on one line; ``attachments`` are the cell's kept ones (``raster_attachments``)."""
    attachments = attachments or {}
    renderer = _Renderer(attachments)
    html = MarkdownWithMath(renderer=renderer).render(source)
    if not has_markup(source) and not renderer.missing and all(_plain_url(u, attachments) for u in renderer.urls):
        return source
    clean = clean_html(html).strip().replace("\r\n", "\n").replace("\r", "\n").replace("\n", "&#10;")
    return f"<div>{clean}</div>"


@functools.lru_cache(maxsize=4096)
def _sanitize_text(source: str) -> str:
    """``sanitize_markdown`` of a cell without attachments, remembered: a batch's notebooks share most cells."""
    return sanitize_markdown(source)


def sanitize_raw(source: str) -> str:
    """A raw cell's ``source``, cleaned by nh3 when it holds markup (nbconvert may write it into the page as is)."""
    return clean_html(source) if has_markup(source) else source


class SanitizeCells(NbGraderPreprocessor):
    """Clean the markdown and raw cells and the attachments of a submission (see the module's docstring)."""

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int):
        if cell.cell_type not in ("markdown", "raw"):
            return cell, resources
        if "attachments" in cell:
            kept = raster_attachments(cell.attachments)
            if kept:
                cell.attachments = kept
            else:
                del cell["attachments"]
        source = cell.source
        if cell.cell_type == "markdown":
            attachments = cell.get("attachments", {})
            cell.source = sanitize_markdown(source, attachments) if attachments else _sanitize_text(source)
        else:
            cell.source = sanitize_raw(source)
        if cell.source != source:
            student = resources.get("nbgrader", {}).get("student", "?")
            self.log.warning("%s: %s cell %d held HTML markup or links of other kinds; it now holds their "
                             "sanitised rendering", student, cell.cell_type, index)
        return cell, resources
