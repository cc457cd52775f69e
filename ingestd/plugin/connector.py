"""The contract between core and a connector plugin.

A connector turns one job into a stream of events: `Staged` (a file to ingest),
`Deleted` (an item gone at the source), `Failed` (an item that could not be staged) and
`Unchanged` (an item the connector knows a job already took, as it is now).
Core does everything after that: hashing, MIME, the blob store, records, the manifest.
When the job's results are durable, core calls `finish` with every outcome, and only
then may the connector act on them: move originals, save a cursor or delta link.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
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
    file sits in the job workspace and core moves it into the blob store, hashing it on
    the way; `sha256` and `size`, if given, are claims checked against the bytes (a
    mismatch fails the item as `integrity`: a connector's word never names a blob). Otherwise
    core opens `path` itself (never through a symlink) and refuses what is not a regular
    file, is over `max_size`, is empty when `allow_empty` is false, or has more than one
    name (st_nlink > 1: a hard link, maybe to a file outside the folder) when
    `allow_hardlinks` is false.

    `path` is None for content the store already holds under `sha256` (a remote item
    renamed or moved): the document is re-pointed to the new origin and metadata without
    any bytes being fetched or copied.

    `opener` (MAY) replaces core's own `open(path)`: called with the open flags, it returns
    the open descriptor and its fstat, and MUST NOT follow a symlink anywhere in the path.
    A connector reading a folder others can write uses it to open relative to a held
    directory (see `ingestd.plugin.kit.Dir`) and to note which inode it handed over.
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
    allow_hardlinks: bool = True
    token: Any = None
    opener: Callable[[int], tuple[int, os.stat_result]] | None = None


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


@dataclass
class Unchanged:
    """An item the connector did not hand over because it knows a finished job took it
    and it has not changed since: counted as discovered and `unchanged`, never read."""

    origin_uri: str
    token: Any = None


Event = Staged | Deleted | Failed | Unchanged


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
    """What a connector gets for one job: `log` is bound to the job (every line carries
    `job_id` and `source`: log through it, not a module logger); `stop` is set when the
    daemon is stopping."""

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
        """A directory for this job's downloads (on the store's filesystem, so an `owned`
        file is moved in, not copied); removed when the job succeeds."""
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
        return [module for module, _ in self.problems()]

    def problems(self) -> list[tuple[str, str | None]]:
        """Each module that cannot be imported, with why when it is there but broken: a
        module raising anything at import (not only ImportError) is unusable all the same."""
        out: list[tuple[str, str | None]] = []
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                out.append((module, None))
            except (Exception, SystemExit) as exc:  # a broken install must not take ingestd down
                out.append((module, f"installed but broken: {type(exc).__name__}: {exc}"))
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
    """Base class for connector plugins; subclass it and register the subclass through the
    `register_connectors` hook. ingestd checks the class once, when the plugin loads, and
    refuses it (the kind is listed as unavailable, with the reason) when a MUST is missing.

    MUST: `kind`, a name for `kind = "..."` in the config (lower case, digits, `-`, `_`);
    `Options`, a pydantic model of the source's keys (subclass `ingestd.plugin.Strict` so
    unknown keys are errors), subclassing `ScheduleOptions` unless the connector is
    watched (a scheduled source takes `every`, `cron` and `jitter`); `stage()`.
    MAY: `requires`, `description`, `state_steps`, `finish()`, `check()`,
    `credential_status()`, `close()`.
    A watched connector subclasses `WatchedConnector` instead (see docs/plugins.md).
    """

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    # MAY: an optional dependency; a source whose dependency is missing is reported with
    # `install` as the remedy, instead of failing at its first job
    requires: ClassVar[Requirement | None] = None
    watched: ClassVar[bool] = False  # True: the daemon watches it; False: it runs on a schedule
    # MAY: one line for people: `ingestd plugins` shows it beside the kind
    description: ClassVar[str] = ""
    # MAY: migrations of what the connector keeps under `sources/<name>/`, oldest first (see
    # `ingestd.plugin.migration`); run for each configured source of this kind at start
    state_steps: ClassVar[tuple[Step, ...]] = ()

    @classmethod
    def contract_problem(cls) -> str | None:
        """Why this class cannot work as declared beyond the checks every connector gets
        (`ingestd.plugin.contract`, at registration: the kind is refused with this reason)."""
        if cls.watched and not getattr(cls, "watched_contract", False):
            return "watched = True needs the watched-connector contract: subclass ingestd.plugin.WatchedConnector"
        return None

    def __init__(self, source: Source, credentials: Registry, state_dir: Path):
        """MAY be extended (call `super().__init__` first). Built once per source, when its
        first job or check needs it: do no I/O here, open clients lazily in `stage()`."""
        self.source = source
        self.options = source.options
        self.credentials = credentials
        self.state_dir = state_dir

    def stage(self, ctx: JobContext) -> Iterator[Event]:
        """MUST: yield one event per item of this job: `Staged` for a file to ingest,
        `Deleted` for an item gone at the source, `Failed` for one that could not be staged.

        Runs on a worker thread, one job per source at a time. Check `ctx.stop` between
        items and return when it is set (the daemon is stopping). Raise `ConnectorError`
        for a failure of the whole job (the items yielded before it are still recorded);
        anything else raised is recorded as `internal` with the traceback in the log.
        """
        raise NotImplementedError

    def finish(self, ctx: JobContext, outcomes: Iterable[Outcome], status: str) -> None:
        """MAY: act on the job's results, which are durable when this is called: move
        originals, save a cursor or delta link. `outcomes` has one entry per event, with
        the event's `token`; iterate it (it has `len()`, but past 32,768 entries they are
        read back from disk, so it is no list). Not called when the results could not be made durable, so a
        cursor saved here never runs ahead of the store. An exception is logged."""

    def check(self) -> list[str]:
        """MAY: problems `check-config` (and the daemon, for a watched source, at start)
        should report: credentials, paths. One line each, starting `sources "NAME": KEY:`;
        a line containing `warning:` is shown without failing the check. Empty when fine.
        Runs without a job: no downloads."""
        return []

    def credential_status(self) -> CredentialStatus:
        """MAY: warnings about the source's credential and when it expires. Called on every
        `GET /sources` and metrics scrape, so it must be cheap: no network (reading a local
        certificate is fine, better cached). The default: nothing to say."""
        return CredentialStatus()

    def close(self) -> None:
        """MAY: release clients and pools when the source is removed or the daemon stops."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why sources of this kind cannot run here (a missing or broken dependency, with
        the remedy), or None. Core's; not for overriding."""
        if not cls.requires:
            return None
        problems = cls.requires.problems()
        if not problems:
            return None
        names = ", ".join(module if why is None else f"{module} ({why})" for module, why in problems)
        return f"needs {names}: {cls.requires.install}"
