"""The Markdown writer extractors share: pipe tables that survive hostile cells, spans of
parts that cover exactly their blocks, and a hard cap on the output."""

import pytest

from ingestd.plugin import ExtractionError, Limits
from ingestd.plugin.kit.markdown import Writer, table


def test_a_cell_cannot_break_its_row_or_its_table():
    lines = table([["a|b", "c\nd"], ["x\\", None, "extra"]])
    assert lines == ["| a\\|b | c d |  |", "|---|---|---|", "| x\\\\ |  | extra |"]


def test_parts_span_their_own_blocks():
    out = Writer(Limits())
    out.paragraph("before")
    out.begin("page")
    out.heading(2, "One")
    out.paragraph("first")
    out.begin("page")  # an empty page
    out.begin("page", "three")
    out.bullets([(0, "a"), (1, "b"), (0, "c")], ordered=True)
    result = out.result()
    first, empty, third = result.boundaries
    assert result.markdown[first.start:first.end] == "## One\n\nfirst"
    assert empty.start == empty.end
    assert result.markdown[third.start:third.end] == "1. a\n   1. b\n2. c" and third.label == "three"
    assert result.pages == 3 and result.markdown.endswith("\n")


def test_output_past_the_limit_is_too_large():
    out = Writer(Limits(max_chars=100))
    with pytest.raises(ExtractionError) as caught:
        out.table_stream([["col"]] + [[f"row {n}"] for n in range(100)])
    assert caught.value.code == "too_large"


def test_an_unknown_code_is_a_programming_error():
    with pytest.raises(ValueError):
        ExtractionError("broken", "no such code")
