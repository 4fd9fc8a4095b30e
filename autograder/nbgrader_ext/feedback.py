"""The exporter of ``grade --feedback``'s pages: nbconvert's ``HTMLExporter``, remembering the HTML of the code and
markdown it has rendered.

A batch's notebooks share most cells (the released text and code, the test cells), and nbconvert highlights and
renders each one again for every student. Here each distinct input is rendered once per process: the key holds
everything the rendering reads (the source; for code the lexer, the formatter options and a cell's
``magics_language``; for markdown the cell's attachments and the exporter's markdown settings), so every page is
byte for byte what ``HTMLExporter`` writes. ``grade.feedback_options`` names it
(``GenerateFeedback.exporter_class``); the ``HTMLExporter`` settings apply to it as to nbconvert's.
"""
from __future__ import annotations

import functools
import json

from nbconvert.exporters import HTMLExporter
from nbconvert.exporters.html import contextfilter
from nbconvert.filters.highlight import Highlight2HTML


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


class FeedbackExporter(HTMLExporter):
    """``HTMLExporter`` with the code cells' highlighting and the markdown cells' HTML remembered."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rendered: dict[tuple, str] = {}

    def _remembered(self, key: tuple, render) -> str:
        if key not in self._rendered:
            self._rendered[key] = render()
        return self._rendered[key]

    def register_filter(self, name, jinja_filter):
        """nbconvert registers a new ``Highlight2HTML`` (with the notebook's lexer) for each notebook."""
        if name == "highlight_code" and isinstance(jinja_filter, Highlight2HTML):
            jinja_filter = functools.partial(self._highlight, jinja_filter)
        return super().register_filter(name, jinja_filter)

    def _highlight(self, highlighter: Highlight2HTML, source: str, language: str | None = None,
                   metadata: dict | None = None) -> str:
        magics = (True, metadata["magics_language"]) if metadata and "magics_language" in metadata else (False,)
        key = ("code", highlighter.pygments_lexer, _json(highlighter.extra_formatter_options), source, language,
               magics)
        return self._remembered(key, lambda: highlighter(source, language, metadata))

    @contextfilter
    def markdown2html(self, context, source: str) -> str:
        """``HTMLExporter.markdown2html``, remembered (the notebook's folder matters only when images are embedded)."""
        if self.embed_images:
            return super().markdown2html(context, source)
        key = ("markdown", source, _json(context.get("cell", {}).get("attachments", {})), self.anchor_link_text,
               self.exclude_anchor_links, _json(self.lexer_options))
        return self._remembered(key, lambda: super(FeedbackExporter, self).markdown2html(context, source))
