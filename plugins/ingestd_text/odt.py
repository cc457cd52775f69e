"""OpenDocument text (.odt) with odfpy (Apache-2.0, as one of its licence options): the
body in order, `text:h` as headings at their outline level, lists (nested) as lists,
tables as pipe tables, other paragraphs as paragraphs."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs
from ingestd_text.office import open_or_raise

TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


class OpenDocumentText(Extractor):
    name = "odt"
    version = "1"
    mime_types = ("application/vnd.oasis.opendocument.text",)
    requires = needs("odf")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        from odf.opendocument import load

        document = open_or_raise(lambda: load(str(path)), path, limits)
        out = Writer(limits)
        for node in document.text.childNodes:
            _block(out, node)
        return out.result()


def _text(node) -> str:
    from odf import teletype

    return teletype.extractText(node)


def _block(out: Writer, node) -> None:
    name = getattr(node, "qname", None)
    if name == (TEXT, "h"):
        level = node.attributes.get((TEXT, "outline-level"), "1")
        out.heading(int(level) if str(level).isdigit() else 1, _text(node))
    elif name == (TEXT, "p"):
        out.paragraph(_text(node))
    elif name == (TEXT, "list"):
        items: list[tuple[int, str]] = []
        _items(node, 0, items)
        out.bullets(items)
    elif name == (TABLE, "table"):
        out.table(_rows(node))
    elif name == (TEXT, "section"):
        for child in node.childNodes:
            _block(out, child)


def _items(node, depth: int, items: list[tuple[int, str]]) -> None:
    for item in node.childNodes:
        if getattr(item, "qname", None) != (TEXT, "list-item"):
            continue
        for child in item.childNodes:
            if getattr(child, "qname", None) == (TEXT, "list"):
                _items(child, depth + 1, items)
            else:
                items.append((depth, _text(child)))


def _rows(table) -> list[list[str]]:
    rows = []
    for node in table.getElementsByType(_row_type()):
        rows.append([_text(cell) for cell in node.childNodes if getattr(cell, "qname", None) == (TABLE, "table-cell")])
    return rows


def _row_type():
    from odf.table import TableRow

    return TableRow
