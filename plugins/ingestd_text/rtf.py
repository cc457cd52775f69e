"""RTF with striprtf (BSD-3): RTF's control words removed, its text and paragraphs kept
(`\\par`, `\\line`), Unicode and code-page escapes decoded. Tables become tab-separated
lines, and headings are plain paragraphs: RTF marks them only by formatting."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, ExtractionError, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs, read_bytes


class Rtf(Extractor):
    name = "rtf"
    version = "1"
    mime_types = ("text/rtf", "application/rtf")
    requires = needs("striprtf")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        from striprtf.striprtf import rtf_to_text

        data = read_bytes(path, limits)
        if not data.lstrip().startswith(b"{\\rtf"):
            raise ExtractionError("corrupt", "does not start with {\\rtf")
        text = rtf_to_text(data.decode("latin-1"), errors="ignore")  # RTF is 7-bit; escapes carry the rest
        out = Writer(limits)
        for paragraph in text.split("\n"):
            out.paragraph(paragraph)
        return out.result()
