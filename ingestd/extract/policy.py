"""Which extractor, if any, a document gets: by its MIME type (the highest-priority
available extractor declaring it), and by its source's keys (`extract`,
`extract_mime`, `extract_skip_mime`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from ingestd.config import Config, SourceExtract
from ingestd.plugin.extractor import Extractor


@dataclass(frozen=True)
class Choice:
    """The extractor for a document, or why there is none."""

    extractor: type[Extractor] | None
    reason: str | None = None  # when there is none


class Policy:
    def __init__(self, extractors: Mapping[str, type[Extractor]], config: Config):
        self.config = config
        self.extractors = {name: cls for name, cls in extractors.items() if cls.unavailable_reason() is None}
        self.by_mime: dict[str, type[Extractor]] = {}
        for cls in sorted(self.extractors.values(), key=lambda c: (-c.priority, c.name)):
            for mime in cls.mime_types:
                self.by_mime.setdefault(mime, cls)

    @property
    def enabled(self) -> bool:
        return self.config.extract.enabled and bool(self.extractors)

    def mime_types(self, extractor: type[Extractor]) -> list[str]:
        """The MIME types this extractor is the one for (another may take some over)."""
        return [m for m in extractor.mime_types if self.by_mime.get(m) is extractor]

    def choose(self, source: str, mime: str) -> Choice:
        if not self.config.extract.enabled:
            return Choice(None, "extraction is off ([extract] enabled = false)")
        wanted = self._source(source)
        if wanted.extract is False:
            return Choice(None, f"extraction is off for source {source!r}")
        if wanted.extract_mime and not _matches(mime, wanted.extract_mime):
            return Choice(None, f"{mime} is not in source {source!r}'s extract_mime")
        if _matches(mime, wanted.extract_skip_mime):
            return Choice(None, f"{mime} is in source {source!r}'s extract_skip_mime")
        cls = self.by_mime.get(mime)
        if cls is None:
            return Choice(None, f"no installed extractor reads {mime}")
        return Choice(cls)

    def _source(self, name: str) -> SourceExtract:
        source = self.config.source(name)
        return source.extract if source is not None else SourceExtract()

    def replace_config(self, config: Config) -> None:
        self.config = config


def _matches(mime: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(mime, p) for p in patterns)
