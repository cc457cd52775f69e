"""What the daemon and an extraction worker say to each other: one JSON line per request
and per reply, over the worker's stdin and a private copy of its stdout."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ingestd.plugin.extractor import Boundary, Limits


@dataclass(frozen=True)
class Request:
    path: str  # the blob to read
    extractor: str  # its registered name
    out: str  # where to write the Markdown (a temp file beside the blob store)
    limits: Limits

    def encode(self) -> bytes:
        return (json.dumps({"path": self.path, "extractor": self.extractor, "out": self.out,
                            "limits": asdict(self.limits)}) + "\n").encode()

    @classmethod
    def decode(cls, line: bytes) -> "Request":
        data = json.loads(line)
        return cls(data["path"], data["extractor"], data["out"], Limits(**data["limits"]))


@dataclass
class Result:
    """One file's outcome. `code` is None on success (then the Markdown is at the
    request's `out`, with this sha256 and size), else one of the typed error codes."""

    code: str | None = None
    message: str | None = None
    sha256: str | None = None
    size: int = 0
    chars: int = 0
    pages: int | None = None
    language: str | None = None
    boundaries: list[Boundary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code is None

    def encode(self) -> bytes:
        data = asdict(self)
        data["boundaries"] = [[b.kind, b.index, b.start, b.end, b.label] for b in self.boundaries]
        return (json.dumps(data, ensure_ascii=False) + "\n").encode()

    @classmethod
    def decode(cls, line: bytes) -> "Result":
        data = json.loads(line)
        data["boundaries"] = [Boundary(*b) for b in data.get("boundaries", [])]
        return cls(**data)

    @classmethod
    def failed(cls, code: str, message: str, seconds: float = 0.0) -> "Result":
        return cls(code=code, message=message, seconds=seconds)
