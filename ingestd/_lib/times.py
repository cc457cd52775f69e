"""The one way ingestd writes a moment: RFC 3339 in UTC, milliseconds, a `Z` suffix.
Manifests, document records and the API all use it, so their times compare as text."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import WithJsonSchema

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A field holding one of these moments: a string, published as `format: date-time`."""


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def iso_from_timestamp(ts: float) -> str:
    return iso(datetime.fromtimestamp(ts, timezone.utc))


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` (Python 3.11's `fromisoformat` takes the `Z`, 3.10's did not)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
