"""PowerPoint (.pptx) with python-pptx (MIT): a boundary per slide, its title as a
heading, text frames as paragraphs or (indented, or in a body placeholder) bullets,
tables as pipe tables, group shapes opened, speaker notes after the slide's text.
Charts, SmartArt and images carry no text here."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs
from ingestd_text.office import open_or_raise


class Presentation(Extractor):
    name = "pptx"
    version = "1"
    mime_types = (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    )
    requires = needs("pptx")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        import pptx

        deck = open_or_raise(lambda: pptx.Presentation(str(path)), path, limits)
        out = Writer(limits)
        for number, slide in enumerate(deck.slides, 1):
            title_shape = slide.shapes.title
            title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
            out.begin("slide", title or None)
            out.heading(2, title or f"Slide {number}")
            for shape in slide.shapes:
                if shape is not title_shape:
                    _shape(out, shape)
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    out.paragraph("Notes: " + notes.text)
        return out.result()


def _shape(out: Writer, shape) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for child in shape.shapes:
            _shape(out, child)
    elif getattr(shape, "has_table", False) and shape.has_table:
        out.table([cell.text for cell in row.cells] for row in shape.table.rows)
    elif shape.has_text_frame:
        _frame(out, shape.text_frame, bulleted=shape.is_placeholder and _is_body(shape))


def _is_body(shape) -> bool:
    try:
        return shape.placeholder_format.type in (2, 7)  # BODY, OBJECT
    except ValueError:
        return False


def _frame(out: Writer, frame, bulleted: bool) -> None:
    """Runs of bullet paragraphs become one list; other paragraphs stay paragraphs."""
    items: list[tuple[int, str]] = []
    for paragraph in frame.paragraphs:
        text = "".join(run.text for run in paragraph.runs) or paragraph.text
        if bulleted or paragraph.level > 0:
            items.append((paragraph.level, text))
            continue
        if items:
            out.bullets(items)
            items = []
        out.paragraph(text)
    if items:
        out.bullets(items)
