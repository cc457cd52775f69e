"""The contract between core and an extractor plugin: bytes in, UTF-8 Markdown out.

An extractor turns one stored file into Markdown (headings, lists and tables kept where
the format has them) plus the boundaries of its pages, sheets or slides. Core decides
when and where it runs: never in the daemon's process, always in a child process with a
wall-clock limit and an address-space limit (`ingestd.extract`), so an extractor may use
any parser, however it behaves on hostile files. What it must do is say what went wrong
in one of the typed codes below, by raising `ExtractionError`; anything else it raises
is recorded as `corrupt`, and a hang or a balloon is ended by core as `timeout` or
`too_large`.

`name` and `version` are recorded with every text it produces: bump `version` whenever a
change could change its output, and `ingestd reextract` (or the daemon, at start) runs it
again on exactly the MIME types it declares; an unchanged version is never run twice on
the same bytes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from ingestd.errors import IngestdError
from ingestd.plugin.connector import Requirement

ErrorCode = Literal["timeout", "too_large", "encrypted", "unsupported", "corrupt"]
ERROR_CODES: tuple[str, ...] = ("timeout", "too_large", "encrypted", "unsupported", "corrupt")
BoundaryKind = Literal["page", "sheet", "slide", "part"]


@dataclass(frozen=True)
class Limits:
    """What one extraction may use. Core enforces `seconds` and `memory_mib` from outside
    the child; `max_chars` and `max_unpacked` are for the extractor to honour (the
    Markdown writer in `ingestd.plugin.kit.markdown` and the zip check in
    `ingestd.plugin.kit.archive` do it for you)."""

    seconds: float = 60.0
    memory_mib: int = 1024
    max_chars: int = 20_000_000  # of Markdown output
    max_unpacked: int = 512 << 20  # bytes a container (a DOCX is a zip) may unpack to


@dataclass(frozen=True)
class Boundary:
    """A page, sheet, slide (or e-mail part) as a span of the Markdown: `start` and `end`
    are offsets in characters (Python string indices), `label` its name where it has one
    (a sheet's name, a slide's title)."""

    kind: BoundaryKind
    index: int  # 1-based, in document order
    start: int
    end: int
    label: str | None = None


@dataclass
class Extracted:
    markdown: str
    boundaries: list[Boundary] = field(default_factory=list)
    language: str | None = None  # ISO 639-1, when the extractor knows it (core guesses otherwise)

    @property
    def pages(self) -> int | None:
        """How many pages, sheets or slides; None for formats without them."""
        return len(self.boundaries) or None


class ExtractionError(IngestdError):
    """A typed failure of one file: `code` is one of ERROR_CODES."""

    def __init__(self, code: ErrorCode, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown extraction error code {code!r} (one of {', '.join(ERROR_CODES)})")
        self.code = code
        self.message = message
        super().__init__(message)


class Extractor:
    """Base class for extractor plugins; subclass and register through `register_extractors`.

    `mime_types` are the exact types ingestd records (by content, refined by extension:
    see the README). When two extractors claim a type, the higher `priority` wins (the
    built-ins have 0), then the name in alphabetical order. Instances are created once per
    worker process and may keep parsers warm between files."""

    name: ClassVar[str]
    version: ClassVar[str]
    mime_types: ClassVar[tuple[str, ...]]
    priority: ClassVar[int] = 0
    requires: ClassVar[Requirement | None] = None

    def extract(self, path: Path, limits: Limits) -> Extracted:
        raise NotImplementedError

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """What to install, when a required module is not there. Looked up without being
        imported: the daemon asks this of every extractor, and a parsing library's import
        belongs in the worker (trafilatura alone costs a second and tens of MiB)."""
        missing = [m for m in (cls.requires.modules if cls.requires else ()) if not _findable(m)]
        return f"needs {', '.join(missing)}: {cls.requires.install}" if missing else None


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
