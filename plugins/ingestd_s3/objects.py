"""The views of an object the sync compares: as the listing shows it (`Listed`), as it
was last fetched (`Token`), and as it was last refused for good (`Skip`); the state
stores the last two."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .keys import canonical_time


@dataclass(frozen=True)
class Token:
    """An object's change token: what was fetched, and what the next listing is compared with."""

    key: str
    etag: str
    size: int
    modified: str
    version_id: str | None = None

    def same(self, etag: str, size: int, modified: str) -> bool:
        return (self.etag, self.size, self.modified) == (etag, size, modified)


@dataclass(frozen=True)
class Listed:
    """One object as the listing showed it."""

    key: str
    etag: str
    size: int
    modified: datetime
    storage_class: str | None = None

    @property
    def token(self) -> Token:
        return Token(self.key, self.etag, self.size, canonical_time(self.modified))

    def skip(self, code: str) -> "Skip":
        return Skip(self.key, self.etag, self.size, canonical_time(self.modified), self.storage_class, code)


@dataclass(frozen=True)
class Skip:
    """An object refused for a reason that holds until the object changes (archived, no
    file name): remembered, so it is reported by one job, not by every run."""

    key: str
    etag: str
    size: int
    modified: str
    storage_class: str | None
    code: str

    def same(self, obj: Listed) -> bool:
        """Whether `obj` is still the object refused (a new class counts: a restored copy)."""
        return (self.etag, self.size, self.modified, self.storage_class) == (
            obj.etag, obj.size, canonical_time(obj.modified), obj.storage_class)
