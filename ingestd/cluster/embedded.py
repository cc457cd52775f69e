"""An embedded state directory opened as a source to copy from, and never written.

`ingestd cluster import` must leave the host's state exactly as it found it, byte for
byte, and must not read it while an embedded ingestd is changing it:
- **The lock**: every embedded process (the daemon for its lifetime, a one-shot while it
  runs) holds `SCHEMA.lock` shared; the import takes it exclusively, through a read-only
  descriptor (flock needs no write permission), and refuses at once when someone holds
  it. Held for the whole import: an embedded daemon started meanwhile waits for it.
- **The catalogue** is a SQLite database in WAL mode. Opening it read-only in place would
  still create or touch its `-shm` index (or, with `immutable=1`, miss what is in an
  unmerged `-wal`), so the database and its `-wal` are copied, under the lock, into a
  scratch directory, and the copy is what is read.
- **The schema**: only a state at this ingestd's schema is imported. An older one is
  refused with the command that migrates it (`ingestd migrate`, on its host, after a
  backup): migrating is the embedded side's job and has its own crash-safety; doing it
  here would either write the source or import a half-understood copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ingestd.errors import IngestdError, MigrationPending, SchemaTooNew, StateBusy, UsageError
from ingestd.jobs.manifest import Manifest
from ingestd.state import marker as marker_mod, steps as core_steps
from ingestd.state.lock import FILE as LOCK_FILE

CATALOGUE = "documents.sqlite"


class Embedded:
    """The state directory `root`, locked against embedded ingestd processes, with a private
    copy of its catalogue. Use as a context manager."""

    def __init__(self, root: Path, connectors: Mapping[str, type] = {}):
        self.root = root
        self.connectors = connectors
        self._fd: int | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self.db: sqlite3.Connection | None = None

    def __enter__(self) -> "Embedded":
        try:
            self._check_shape()
            self._lock()
            self.check_schema()
            self.db = self._copy_catalogue()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    # -- opening -----------------------------------------------------------------------

    def _check_shape(self) -> None:
        if not (self.root / CATALOGUE).is_file():
            raise UsageError(f"{self.root}: not an ingestd state directory (no {CATALOGUE}); "
                             "--from takes the embedded daemon's daemon.state_dir")

    def _lock(self) -> None:
        try:
            self._fd = os.open(self.root / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # never opened by an ingestd that locks: the schema check refuses it
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateBusy(f"{self.root}: an embedded ingestd (the daemon, or a one-shot command) is using this "
                            "state; stop it (systemctl stop ingestd), then run the import again") from None

    def check_schema(self) -> None:
        """Refuse a state whose core schema, or any source directory's, is not this ingestd's."""
        found = marker_mod.read(self.root)
        version = found.schema_version if found else marker_mod.UNMARKED
        latest = core_steps.latest(core_steps.CORE)
        if version > latest:
            raise SchemaTooNew(f"{self.root}: the state is at schema {version}, newer than this ingestd knows "
                               f"(up to {latest}): import it with the ingestd version that wrote it")
        if version < latest:
            raise MigrationPending(
                f"{self.root}: the state is at schema {version}, this ingestd imports schema {latest}: on its host, "
                "back it up, then run `ingestd migrate --config <its ingestd.toml>` (or start the upgraded "
                "daemon once) and import again; the import never migrates the source (see docs/upgrading.md)")
        for name, directory in self.source_dirs():
            self._check_source(name, directory)

    def _check_source(self, name: str, directory: Path) -> None:
        found = marker_mod.read(directory)
        cls = self.connectors.get(found.kind) if found and found.kind else None
        if cls is None:
            return  # no marker, or a connector not installed here: its files are carried as they are
        latest = core_steps.latest(tuple(cls.state_steps))
        if found.schema_version < latest:
            raise MigrationPending(f"{directory}: source {name!r} ({found.kind}) is at schema {found.schema_version}, "
                                   f"this ingestd needs {latest}: run `ingestd migrate` on its host first")
        if found.schema_version > latest:
            raise SchemaTooNew(f"{directory}: source {name!r} ({found.kind}) is at schema {found.schema_version}, "
                               f"newer than this ingestd knows ({latest})")

    def _copy_catalogue(self) -> sqlite3.Connection:
        self._scratch = tempfile.TemporaryDirectory(prefix="ingestd-import-")
        scratch = Path(self._scratch.name)
        for suffix in ("", "-wal"):
            src = self.root / (CATALOGUE + suffix)
            if src.exists():
                shutil.copyfile(src, scratch / (CATALOGUE + suffix))
        db = sqlite3.connect(scratch / CATALOGUE, isolation_level=None, check_same_thread=False)
        try:
            db.execute("SELECT last FROM feed WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise IngestdError(f"{self.root / CATALOGUE}: cannot read the catalogue ({exc}); "
                               "run `ingestd verify` on its host") from None
        return db

    # -- reading -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        q = self.db.execute
        return {"documents": q("SELECT count(*) FROM documents").fetchone()[0],
                "versions": q("SELECT count(*) FROM versions").fetchone()[0],
                "changes": q("SELECT count(*) FROM changes").fetchone()[0]}

    def feed(self) -> tuple[int, int]:
        """(last cursor handed out, last cursor pruned)."""
        return tuple(self.db.execute("SELECT last, expired FROM feed WHERE id = 1").fetchone())

    def contents(self) -> list[tuple[str, int]]:
        """Every distinct content the versions name, as (sha256, size), by sha256."""
        return self.db.execute("SELECT sha256, max(size) FROM versions GROUP BY sha256 ORDER BY sha256").fetchall()

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def documents(self, after: str, limit: int) -> list[tuple]:
        return self.db.execute("SELECT doc_id, source, origin_uri, current_seq, deleted_at, deleted_job FROM documents "
                               "WHERE doc_id > ? ORDER BY doc_id LIMIT ?", (after, limit)).fetchall()

    def versions_of(self, first: str, last: str) -> list[tuple]:
        return self.db.execute(
            "SELECT doc_id, seq, kind, sha256, size, mime, origin_uri, source_modified_at, ingested_at, job_id, "
            "metadata FROM versions WHERE doc_id BETWEEN ? AND ? ORDER BY doc_id, seq", (first, last)).fetchall()

    def changes(self, after: int, limit: int) -> list[tuple]:
        return self.db.execute("SELECT cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, "
                               "at FROM changes WHERE cursor > ? ORDER BY cursor LIMIT ?", (after, limit)).fetchall()

    def job_ids(self) -> list[str]:
        """Every job with a manifest, oldest first (ids sort by creation time)."""
        jobs = self.root / "jobs"
        if not jobs.is_dir():
            return []
        return sorted(p.name[:-5] for p in jobs.iterdir() if p.name.endswith(".json") and not p.name.startswith("."))

    def manifest(self, job_id: str) -> Manifest | None:
        """None for a manifest that cannot be read (reported, not imported)."""
        try:
            return Manifest.model_validate(json.loads((self.root / "jobs" / f"{job_id}.json").read_bytes()))
        except (OSError, ValueError):
            return None

    def items(self, manifest: Manifest) -> Iterator[dict]:
        """The job's item records; a torn last line (a crash mid-write) is left out."""
        path = self.root / "jobs" / Path(manifest.items_file).name
        try:
            with open(path, "rb") as f:
                for line in f:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
        except FileNotFoundError:
            return

    def source_dirs(self) -> list[tuple[str, Path]]:
        """Each source's connector state directory (cursors, kept-file memory), by name."""
        root = self.root / "sources"
        if not root.is_dir():
            return []
        return sorted((p.name, p) for p in root.iterdir() if p.is_dir() and not p.is_symlink())

    def source_kind(self, directory: Path) -> str | None:
        found = marker_mod.read(directory)
        return found.kind if found else None
