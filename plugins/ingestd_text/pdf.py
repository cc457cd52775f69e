"""PDF with pypdfium2 (Google's PDFium, Apache-2.0/BSD-3): the engine Chrome renders PDFs
with, fast, and robust on damaged files; text comes out page by page in reading order.

A PDF has no headings or tables, only positioned glyphs, so the Markdown is the text of
each page, one block per page (a page boundary each); scanned pages without a text layer
give no text (no OCR here)."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, ExtractionError, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs

# FPDF_GetLastError codes (fpdfview.h) as pypdfium2 reports them
_PASSWORD = "password"


class Pdf(Extractor):
    name = "pdf"
    version = "1"
    mime_types = ("application/pdf",)
    requires = needs("pypdfium2")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        import pypdfium2 as pdfium

        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            text = str(exc)
            if _PASSWORD in text.lower():
                raise ExtractionError("encrypted", "the PDF needs a password") from None
            raise ExtractionError("corrupt", f"PDFium cannot open it: {text}") from None
        out = Writer(limits)
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                text = textpage.get_text_bounded()
                textpage.close()
                page.close()
                out.begin("page")
                out.block(_paragraphs(text))
        finally:
            pdf.close()
        return out.result()


def _paragraphs(text: str) -> str:
    """PDFium ends lines with CRLF; keep the lines, drop the blanks' whitespace."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out, blank = [], False
    for line in lines:
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
            blank = False
        out.append(line)
    return "\n".join(out)
