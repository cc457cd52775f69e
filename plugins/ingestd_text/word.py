"""Word (.docx) with python-docx (MIT): the body in document order, paragraphs and tables
interleaved as written; headings from the `Heading N`/`Title` styles, list items from
the list styles or numbering, tables as pipe tables. Character formatting, headers,
footers, footnotes and comments are not carried over.

mammoth (BSD-2) was the other candidate: it maps styles to HTML well but its Markdown
writer is deprecated and drops tables, and going through HTML would cost a second parse."""

from __future__ import annotations

import re
from pathlib import Path

from ingestd.plugin import Extracted, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs
from ingestd_text.office import open_or_raise

_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)
_LIST = re.compile(r"^list (bullet|number|paragraph)(?: (\d))?$", re.IGNORECASE)


class WordDocument(Extractor):
    name = "docx"
    version = "1"
    mime_types = (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-word.document.macroEnabled.12",
    )
    requires = needs("docx")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        import docx
        from docx.table import Table

        document = open_or_raise(lambda: docx.Document(str(path)), path, limits)
        out = Writer(limits)
        items: list[tuple[int, str]] = []
        ordered = False
        for block in document.iter_inner_content():
            kind = None if isinstance(block, Table) else _list_kind(block)
            if items and (kind is None or (kind == "number") != ordered):
                out.bullets(items, ordered)
                items = []
            if isinstance(block, Table):
                out.table([cell.text for cell in row.cells] for row in block.rows)
            elif kind is not None:
                ordered = kind == "number"
                items.append((_depth(block), block.text))
            else:
                _paragraph(out, block)
        if items:
            out.bullets(items, ordered)
        return out.result()


def _style(paragraph) -> str:
    try:
        return (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, ValueError):
        return ""


def _list_kind(paragraph) -> str | None:
    match = _LIST.match(_style(paragraph))
    if match:
        return "number" if match.group(1).lower() == "number" else "bullet"
    ppr = paragraph._p.pPr
    if ppr is not None and ppr.numPr is not None:
        return "bullet"
    return None


def _depth(paragraph) -> int:
    match = _LIST.match(_style(paragraph))
    if match and match.group(2):
        return int(match.group(2)) - 1
    ppr = paragraph._p.pPr
    if ppr is not None and ppr.numPr is not None and ppr.numPr.ilvl is not None:
        return int(ppr.numPr.ilvl.val)
    return 0


def _paragraph(out: Writer, paragraph) -> None:
    style = _style(paragraph)
    heading = _HEADING.match(style)
    if heading:
        out.heading(int(heading.group(1)), paragraph.text)
    elif style.lower() == "title":
        out.heading(1, paragraph.text)
    else:
        out.paragraph(paragraph.text)
