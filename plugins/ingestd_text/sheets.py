"""Spreadsheets: Excel (.xlsx/.xlsm) with openpyxl (MIT) in read-only mode, which streams
rows from the file instead of loading the sheet (a sheet of a million rows costs the
memory of one row); CSV/TSV with the standard library, after encoding detection.

Each sheet is a boundary, with its name as a heading and its used rows as one pipe table
(the first row as the header; empty rows left out, cached values of formulas, never
the formulas). Output stops at `max_chars` (`too_large`)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ingestd.plugin import Extracted, ExtractionError, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import decode, needs, read_bytes
from ingestd_text.office import open_or_raise


class Spreadsheet(Extractor):
    name = "xlsx"
    version = "1"
    mime_types = (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-excel.sheet.macroEnabled.12",
    )
    requires = needs("openpyxl")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        import openpyxl

        # a file object, not the path: openpyxl refuses a path without an .xlsx-like suffix,
        # and a blob's name is its hash
        stream = open(path, "rb")
        try:
            book = open_or_raise(lambda: openpyxl.load_workbook(stream, read_only=True, data_only=True), path, limits)
        except BaseException:
            stream.close()
            raise
        out = Writer(limits)
        try:
            for sheet in book.worksheets:
                out.begin("sheet", sheet.title)
                out.heading(2, sheet.title)
                try:
                    out.table_stream(_used(sheet.iter_rows(values_only=True)))
                except (zipfile.BadZipFile, KeyError, ValueError, SyntaxError) as exc:
                    raise ExtractionError("corrupt", f"sheet {sheet.title!r}: {type(exc).__name__}: {exc}") from None
        finally:
            book.close()
            stream.close()
        return out.result()


def _used(rows) -> Iterator[tuple]:
    """Rows with something in them, trailing empty cells trimmed."""
    for row in rows:
        end = len(row)
        while end and (row[end - 1] is None or row[end - 1] == ""):
            end -= 1
        if end:
            yield row[:end]


class Csv(Extractor):
    name = "csv"
    version = "1"
    mime_types = ("text/csv", "text/tab-separated-values")
    requires = needs("charset_normalizer")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        text = decode(read_bytes(path, limits))
        sample = text[:64 << 10]
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel_tab if path.suffix.lower() == ".tsv" or "\t" in sample.split("\n", 1)[0] else csv.excel
        out = Writer(limits)
        try:
            out.table_stream(_used(tuple(r) for r in csv.reader(io.StringIO(text, newline=""), dialect)))
        except csv.Error as exc:
            raise ExtractionError("corrupt", f"not readable as CSV: {exc}") from None
        return out.result()
