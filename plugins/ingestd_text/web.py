"""HTML with trafilatura (Apache-2.0): made for pulling a page's main content (article
text, headings, lists, tables) and leaving out navigation, headers, footers and
boilerplate, with Markdown output. When it finds no main content (a page that is all
navigation, or a fragment), the page's whole visible text is taken instead, so nothing
is silently empty. Links are dropped (their text kept)."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import Extracted, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import needs, read_bytes


class Html(Extractor):
    name = "html"
    version = "1"
    mime_types = ("text/html", "application/xhtml+xml")
    requires = needs("trafilatura")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        out = Writer(limits)
        out.block(html_to_markdown(read_bytes(path, limits)))
        return out.result()


def html_to_markdown(html: bytes | str) -> str:
    import trafilatura

    text = trafilatura.extract(html, output_format="markdown", include_tables=True, include_formatting=True,
                               include_links=False, include_images=False, include_comments=False,
                               favor_recall=True, deduplicate=False, with_metadata=False)
    if not text:
        text = trafilatura.html2txt(html) or ""
    return text
