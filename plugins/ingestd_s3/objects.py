"""The two views of an object the sync compares: as the listing shows it (`Listed`),
and as it was last fetched (`Token`, what the state stores)."""

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
