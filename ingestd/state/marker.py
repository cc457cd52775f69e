"""The version marker: `SCHEMA.json` in the directory it describes (the state directory,
or a source's own directory for a connector's state), rewritten atomically after each step.

A file rather than a table in `documents.sqlite`: the state is more than that database
(manifests, items files, blobs, each connector's files), a file is read by any version
of ingestd without opening SQLite, and a plugin's directory carries its own marker the
same way. A directory without one is at version 1: what ingestd 0.1.0 wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingestd._lib.atomic import write_json
from ingestd._lib.times import now_iso
from ingestd._lib.version import VERSION
from ingestd.errors import IngestdError

FILE = "SCHEMA.json"
UNMARKED = 1  # the version of a directory without a marker


class Applied(BaseModel):
    """One step as it was applied: which, when, by which ingestd."""

    version: int
    step: str
    at: str = Field(default_factory=now_iso)
    by: str = VERSION


class Marker(BaseModel):
    """`created` is set when this ingestd made the directory at its latest schema (no
    step ran); `history` lists the steps applied to it since, oldest first."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: int = Field(alias="schema", ge=1)
    kind: str | None = None  # for a source's directory: the connector kind whose steps count
    created: Applied | None = None
    history: list[Applied] = []


def read(root: Path) -> Marker | None:
    path = root / FILE
    try:
        return Marker.model_validate(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (ValueError, ValidationError) as exc:
        raise IngestdError(f"{path}: not a schema marker ({str(exc).splitlines()[0]}); "
                           "restore it from your backup (see docs/upgrading.md)") from None


def write(root: Path, marker: Marker) -> None:
    """Durable when it returns: a step is recorded as done only once this has happened."""
    write_json(root / FILE, marker.model_dump(mode="json", by_alias=True, exclude_none=True))


def remove_torn_writes(root: Path) -> None:
    """A kill during `write` leaves its temp file beside the marker (never a torn marker)."""
    for tmp in root.glob(f".{FILE}.*.tmp"):
        tmp.unlink(missing_ok=True)
