"""Plain text and Markdown: decoded from whatever encoding they came in (BOM, UTF-8, else
charset-normalizer's guess), line endings made `\\n`, passed through as Markdown (a
Markdown file keeps its own structure; plain text is its paragraphs)."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import decode, needs, read_bytes


class PlainText(Extractor):
    name = "text"
    version = "1"
    mime_types = ("text/plain", "text/markdown", "text/x-markdown")
    requires = needs("charset_normalizer")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        text = decode(read_bytes(path, limits)).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        out = Writer(limits)
        out.block(text.strip("\n"))
        return out.result()
