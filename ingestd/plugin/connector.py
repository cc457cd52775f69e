"""The contract between core and a connector plugin.

A connector turns one job into a stream of events: `Staged` (a file to ingest),
`Deleted` (an item gone at the source) and `Failed` (an item that could not be staged).
Core does everything after that: hashing, MIME, the blob store, records, the manifest.
When the job's results are durable, core calls `finish` with every outcome, and only
then may the connector act on them: move originals, save a cursor or delta link.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from ingestd.config import Source
from ingestd.credentials import Registry
from ingestd.errors import Code
from ingestd.plugin.migration import Step
from ingestd.plugin.progress import Progress

OutcomeName = Literal["ingested", "unchanged", "skipped", "failed", "deleted"]


@dataclass
class Staged:
    """A file ready to ingest.

    `identity` is what makes two deliveries the same document (defaults to the origin
    URI; SharePoint uses its item id so a rename keeps the document). With `owned`, the
    file sits in the job workspace and core may move it into the blob store; `sha256`
    and `size` are then the values the connector computed while downloading. Otherwise
    core opens `path` itself (never through a symlink) and refuses what is not a regular
    file, is over `max_size`, or is empty when `allow_empty` is false.

    `path` is None for content the store already holds under `sha256` (a remote item
    renamed or moved): the document is re-pointed to the new origin and metadata without
    any bytes being fetched or copied.
    """

    origin_uri: str
    path: str | Path | None
    name: str
    identity: str | None = None
    source_modified_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    owned: bool = False
    sha256: str | None = None
    size: int | None = None
    max_size: int | None = None
    allow_empty: bool = True
    token: Any = None


@dataclass
class Deleted:
    origin_uri: str
    identity: str | None = None
    token: Any = None


@dataclass
class Failed:
    """An item that could not be staged. `skip` marks a deliberate refusal (a symlink, an
    empty file) as opposed to a failure the next run should retry."""

    origin_uri: str
    code: Code
    message: str
    skip: bool = False
    request_id: str | None = None
    token: Any = None


Event = Staged | Deleted | Failed


@dataclass
class Outcome:
    event: Event
    outcome: OutcomeName
    doc_id: str | None = None
    sha256: str | None = None
    code: Code | None = None
    message: str | None = None


@dataclass
class JobContext:
    """What a connector gets for one job."""

    job_id: str
    source: Source
    state_dir: Path
    stop: threading.Event
    log: Any
    hint: list[str] | None = None  # for a watch-triggered job: the settled files' paths
    progress: Progress = field(default_factory=Progress)  # MAY be fed: phase, totals, bytes downloaded
    filtered: int = 0  # see note_filtered

    def note_filtered(self, count: int = 1) -> None:
        """Count items the source listed but `include`/`exclude` left out: they are no
        events (nothing to record per item), yet the job's counters must show them."""
        self.filtered += count

    @property
    def workspace(self) -> Path:
        path = self.state_dir / "workspace" / self.job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def source_state(self) -> Path:
        """A directory the connector owns for its cursors (per source, survives jobs)."""
        path = self.state_dir / "sources" / self.source.name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Requirement:
    """An optional dependency a connector needs, and how to install it."""

    modules: tuple[str, ...]
    install: str

    def missing(self) -> list[str]:
        """Modules that cannot be imported (absent, or installed but broken)."""
        out = []
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                out.append(module)
        return out


@dataclass(frozen=True)
class CredentialStatus:
    """What a connector knows about the health of its source's credential, short of using
    it: advisory `warnings` (e.g. "certificate expires on 2026-01-05 (6 days left)") and
    `expires_at`, the Unix time it stops working. Shown on `GET /sources` and as the metric
    `ingestd_credential_expiry_timestamp_seconds`; never fatal to a job."""

    warnings: tuple[str, ...] = ()
    expires_at: float | None = None


class Connector:
    """Base class for connector plugins; subclass and register through `register_connectors`."""

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    requires: ClassVar[Requirement | None] = None
    watched: ClassVar[bool] = False  # True: the daemon watches it; False: it runs on a schedule
    description: ClassVar[str] = ""
    # migrations of what the connector keeps under `sources/<name>/`, oldest first (see
    # `ingestd.plugin.migration`); run for each configured source of this kind at start
    state_steps: ClassVar[tuple[Step, ...]] = ()

    def __init__(self, source: Source, credentials: Registry, state_dir: Path):
        self.source = source
        self.options = source.options
        self.credentials = credentials
        self.state_dir = state_dir

    def stage(self, ctx: JobContext) -> Iterator[Event]:
        raise NotImplementedError

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        """Called once the job's records and manifest are durable."""

    def check(self) -> list[str]:
        """Problems `check-config` should report (credentials, paths); empty when fine."""
        return []

    def credential_status(self) -> CredentialStatus:
        """MAY: warnings about the source's credential and when it expires. Called on every
        `GET /sources` and metrics scrape, so it must be cheap: no network (reading a local
        certificate is fine, better cached). The default: nothing to say."""
        return CredentialStatus()

    def close(self) -> None:
        """Release clients and pools when the source is removed or the daemon stops."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if cls.requires and cls.requires.missing():
            return f"needs {', '.join(cls.requires.missing())}: {cls.requires.install}"
        return None
