"""Writing Markdown the way every extractor should: blocks separated by one blank line,
tables as pipe tables, boundaries of pages/sheets/slides as character spans, and a hard
cap on the output's size (`Limits.max_chars`), so a huge sheet ends as `too_large`
instead of filling the disk."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ingestd.plugin.extractor import Boundary, BoundaryKind, Extracted, ExtractionError, Limits

_SPACE = re.compile(r"[ \t\r\f\v\u00a0]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """One line of text: control characters dropped, runs of blanks made one space."""
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def cell(value) -> str:
    """A table cell: one line, pipes escaped (a cell with a newline would end the row)."""
    if value is None:
        return ""
    text = clean(str(value).replace("\n", " "))
    return text.replace("\\", "\\\\").replace("|", "\\|")


def table(rows: Iterable[Sequence]) -> list[str]:
    """A pipe table; the first row is the header. Ragged rows are padded."""
    rows = [[cell(v) for v in row] for row in rows]
    if not rows:
        return []
    width = max(len(r) for r in rows) or 1
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = [_row(rows[0]), "|" + "---|" * width]
    lines += [_row(r) for r in rows[1:]]
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


class Writer:
    """Collects blocks of Markdown and the spans of the document's parts."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._parts: list[str] = []
        self._size = 0
        self._boundaries: list[Boundary] = []
        self._open: tuple[BoundaryKind, str | None] | None = None
        self._start: int | None = None  # where the open part's first block starts

    # -- blocks ---------------------------------------------------------------------------

    def block(self, text: str) -> None:
        """A paragraph (or any block): separated from the previous one by a blank line."""
        text = text.strip("\n")
        if not text.strip():
            return
        if self._size:
            self._add("\n\n")
        if self._open is not None and self._start is None:
            self._start = self._size
        self._add(text)

    def heading(self, level: int, text: str) -> None:
        text = clean(text)
        if text:
            self.block("#" * max(1, min(level, 6)) + " " + text)

    def paragraph(self, text: str) -> None:
        lines = [clean(line) for line in text.splitlines()]
        self.block("\n".join(line for line in lines if line))

    def bullets(self, items: Iterable[tuple[int, str]], ordered: bool = False) -> None:
        """A list from (depth, text) pairs; depth 0 is the outermost level."""
        lines, numbers = [], {}
        for depth, text in items:
            text = clean(text)
            if not text:
                continue
            numbers[depth] = numbers.get(depth, 0) + 1
            for deeper in [d for d in numbers if d > depth]:
                del numbers[deeper]
            mark = f"{numbers[depth]}." if ordered else "-"
            lines.append("   " * depth + f"{mark} {text}")
        self.block("\n".join(lines))

    def table(self, rows: Iterable[Sequence]) -> None:
        self.block("\n".join(table(rows)))

    def table_stream(self, rows: Iterable[Sequence]) -> int:
        """A table written row by row (a big sheet is never held whole); returns its rows."""
        count = 0
        width = 0
        for row in rows:
            cells = [cell(v) for v in row]
            if count == 0:
                width = max(len(cells), 1)
                self.block(_row(cells + [""] * (width - len(cells))))
                self._add("\n|" + "---|" * width)
            else:
                cells = cells[:width] + [""] * (width - len(cells))
                self._add("\n" + _row(cells))
            count += 1
        return count

    # -- parts ----------------------------------------------------------------------------

    def begin(self, kind: BoundaryKind, label: str | None = None) -> None:
        """Start a page, sheet or slide (ending the one before)."""
        self.end()
        self._open = (kind, label)
        self._start = None

    def end(self) -> None:
        """End the open part: its span runs from its first block to its last (an empty
        part is an empty span where it stood)."""
        if self._open is None:
            return
        kind, label = self._open
        start = self._size if self._start is None else self._start
        self._open = self._start = None
        self._boundaries.append(Boundary(kind, len(self._boundaries) + 1, start, self._size, label))

    def result(self, language: str | None = None) -> Extracted:
        self.end()
        text = "".join(self._parts)
        if text:
            text += "\n"
        return Extracted(text, list(self._boundaries), language)

    def _add(self, text: str) -> None:
        self._size += len(text)
        if self._size > self.limits.max_chars:
            raise ExtractionError("too_large", f"the text is longer than the {self.limits.max_chars}-character limit")
        self._parts.append(text)
