"""Job manifests: one JSON file per job, rewritten atomically on every transition.

The manifest is the job's whole public record: what started it, when, what it counted,
what went wrong. Per-item outcomes go to a separate JSON-lines file so the manifest stays
small for a sync of a million objects. An in-memory index answers listings without
reading every manifest per request.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import redact
from .atomic import remove_stale_temps, write_json
from .errors import Code, NotFoundError, StoreError, UsageError
from .paths import is_valid_id
from .store import now_iso

Status = Literal["queued", "running", "succeeded", "partial", "failed"]
Trigger = Literal["watch", "schedule", "api", "cli", "recovery"]
TERMINAL = ("succeeded", "partial", "failed")
_NEXT = {"queued": ("running", "failed"), "running": TERMINAL}
MAX_ERRORS = 100


class Counters(BaseModel):
    discovered: int = 0
    ingested: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    bytes: int = 0


class JobError(BaseModel):
    code: Code
    message: str
    item: str | None = None
    at: str = Field(default_factory=now_iso)
    request_id: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_version: int = Field(default=1, alias="schema")
    job_id: str
    source: str
    kind: str
    trigger: Trigger
    status: Status = "queued"
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    counters: Counters = Field(default_factory=Counters)
    errors: list[JobError] = []
    errors_dropped: int = 0
    items_file: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = _parse(self.finished_at) if self.finished_at else datetime.now(timezone.utc)
        return round((end - _parse(self.started_at)).total_seconds(), 3)

    def add_error(self, error: JobError) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        else:
            self.errors_dropped += 1

    def to_json(self) -> dict[str, Any]:
        return redact.scrub(self.model_dump(mode="json", by_alias=True))


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class _IdClock:
    """Job ids sort by creation time and never repeat, even within one microsecond."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = 0

    def new_id(self) -> str:
        with self._lock:
            now = max(int(datetime.now(timezone.utc).timestamp() * 1_000_000), self._last + 1)
            self._last = now
        stamp = datetime.fromtimestamp(now / 1_000_000, timezone.utc).strftime("%Y%m%dT%H%M%S")
        return f"{stamp}{now % 1_000_000:06d}Z-{os.urandom(4).hex()}"


_clock = _IdClock()


class JobStore:
    def __init__(self, state_dir: Path):
        self.dir = state_dir / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index: dict[str, Manifest] = {}
        self._unsaved: dict[str, Manifest] = {}
        self.unreadable: list[str] = []

    # -- lifecycle -------------------------------------------------------------------

    def create(self, source: str, kind: str, trigger: Trigger) -> Manifest:
        job_id = _clock.new_id()
        manifest = Manifest(
            job_id=job_id, source=source, kind=kind, trigger=trigger, created_at=now_iso(),
            items_file=f"{job_id}.items.jsonl",
        )
        self.save(manifest)
        return manifest

    def transition(self, manifest: Manifest, status: Status) -> Manifest:
        if status not in _NEXT.get(manifest.status, ()):
            raise StoreError(f"job {manifest.job_id}: cannot go from {manifest.status} to {status}")
        manifest.status = status
        if status == "running":
            manifest.started_at = now_iso()
        if status in TERMINAL:
            manifest.finished_at = now_iso()
        self.save(manifest)
        return manifest

    def save(self, manifest: Manifest) -> None:
        """Persist a manifest. If the disk refuses (full), the in-memory index still moves
        on, so status stays truthful, and the write is retried with the next save."""
        copy = manifest.model_copy(deep=True)
        with self._lock:
            self._index[manifest.job_id] = copy
        try:
            write_json(self.path(manifest.job_id), manifest.to_json())
        except OSError:
            with self._lock:
                self._unsaved[manifest.job_id] = copy
            raise
        with self._lock:
            self._unsaved.pop(manifest.job_id, None)
            pending = list(self._unsaved.values())
        for stale in pending:
            try:
                write_json(self.path(stale.job_id), stale.to_json())
            except OSError:
                return
            with self._lock:
                if self._unsaved.get(stale.job_id) is stale:
                    del self._unsaved[stale.job_id]

    def path(self, job_id: str) -> Path:
        if not is_valid_id(job_id):
            raise UsageError(f"malformed job id {job_id[:80]!r}")
        return self.dir / f"{job_id}.json"

    def items_path(self, manifest: Manifest) -> Path:
        return self.dir / manifest.items_file

    # -- reading ----------------------------------------------------------------------

    def load_all(self) -> list[Manifest]:
        """Rebuild the index from disk (at start, or for CLI reads)."""
        remove_stale_temps(self.dir)
        index, bad = {}, []
        for entry in os.scandir(self.dir):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                m = Manifest.model_validate(json.loads(Path(entry.path).read_bytes()))
                index[m.job_id] = m
            except (ValueError, ValidationError, OSError):
                bad.append(entry.name)
        with self._lock:
            self._index = index
            self.unreadable = bad
        return list(index.values())

    def get(self, job_id: str) -> Manifest:
        path = self.path(job_id)  # validates before touching the disk
        with self._lock:
            cached = self._index.get(job_id)
        if cached is not None:
            return cached.model_copy(deep=True)
        try:
            return Manifest.model_validate(json.loads(path.read_bytes()))
        except FileNotFoundError:
            raise NotFoundError(f"no job {job_id}") from None

    def list(self, *, source=None, status=None, limit: int = 50, before: str | None = None) -> list[Manifest]:
        with self._lock:
            rows = sorted(self._index.values(), key=lambda m: m.job_id, reverse=True)
        out = []
        for m in rows:
            if before and m.job_id >= before:
                continue
            if (source and m.source != source) or (status and m.status != status):
                continue
            out.append(m)
            if len(out) >= limit:
                break
        return out

    def active(self) -> list[Manifest]:
        with self._lock:
            return [m for m in self._index.values() if not m.terminal]

    def recover(self) -> list[Manifest]:
        """Jobs a crash left queued or running are closed as failed/interrupted."""
        recovered = []
        for manifest in self.active():
            if manifest.status == "queued":
                manifest.status = "running"
            manifest.add_error(JobError(code=Code.INTERRUPTED, message="ingestd stopped before the job finished"))
            self.transition(manifest, "failed")
            recovered.append(manifest)
        return recovered


class ItemsWriter:
    """Appends per-item outcomes; `flush` makes them durable with the batch they belong to."""

    def __init__(self, path: Path):
        self._fh = open(path, "ab")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
        self._fh.write(redact.scrub_text(line).encode() + b"\n")

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
