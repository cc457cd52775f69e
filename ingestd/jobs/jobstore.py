"""The job store: manifests on disk, one JSON file per job rewritten atomically on every
transition, and what answers for them in memory. A compact index (id, source, status per
job) answers listings without reading or sorting every manifest per request; full manifests
are held only for live jobs and a bounded cache, so memory stays small over a daemon's life.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from ingestd._lib.atomic import write_json
from ingestd._lib.files import unlink_quietly
from ingestd._lib.paths import is_valid_id
from ingestd._lib.times import now_iso, parse_iso
from ingestd.errors import Code, ConnectorError, NotFoundError, StoreError, UsageError
from ingestd.jobs.finished import Finished, FinishedFile
from ingestd.jobs.index import JobIndex
from ingestd.jobs.locks import source_lock
from ingestd.jobs.manifest import JobError, LiveProgress, Manifest, Status, TERMINAL, Trigger
from ingestd.plugin.progress import Progress

_NEXT = {"queued": ("running", "failed"), "running": TERMINAL}


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
new_job_id = _clock.new_id  # the one id policy, for every job store (the cluster's too)


CACHE_SIZE = 512  # finished manifests kept in memory (~2.4 KB each): a full API page (500) of the newest jobs


class JobStore:
    """Manifests on disk, and what answers for them in memory.

    In memory: the compact JobIndex of every job; the full manifest of each job still
    queued or running (they change, and the daemon reads them constantly); manifests the
    disk refused to take (their newest state exists nowhere else); and a bounded LRU cache
    of finished manifests, which covers what pollers ask for (the newest jobs). Any other
    finished manifest is read from its file when asked for: finished manifests never change.
    """

    def __init__(self, state_dir: Path, cache_size: int = CACHE_SIZE):
        self.dir = state_dir / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index = JobIndex()
        self._live: dict[str, Manifest] = {}  # queued or running
        self._unsaved: dict[str, Manifest] = {}
        self._cache: OrderedDict[str, Manifest] = OrderedDict()
        self._cache_size = cache_size
        self._last_success: dict[str, tuple[float, str]] = {}  # source → (finished, job_id)
        self._progress: dict[str, tuple[Progress, list[int]]] = {}  # running job → (meter, [version written])
        self._io = threading.Lock()  # one manifest write at a time: a slower writer never lands an older state
        self._finished = FinishedFile(self.dir)
        self.unreadable: list[str] = []
        self.write_error: OSError | None = None  # the last manifest write that failed, until one succeeds

    # -- lifecycle -------------------------------------------------------------------

    def create(self, source: str, kind: str, trigger: Trigger) -> Manifest:
        job_id = _clock.new_id()
        manifest = Manifest(
            job_id=job_id, source=source, kind=kind, trigger=trigger, created_at=now_iso(),
            items_file=_items_file(job_id),
        )
        try:
            self.save(manifest)
        except OSError:
            with self._lock:  # a job whose record was never written does not exist
                for held in (self._live, self._unsaved):
                    held.pop(job_id, None)
                self._index.discard(job_id)
            raise
        return manifest

    def transition(self, manifest: Manifest, status: Status) -> Manifest:
        if status not in _NEXT.get(manifest.status, ()):
            raise StoreError(f"job {manifest.job_id}: cannot go from {manifest.status} to {status}")
        manifest.status = status
        if status == "running":
            manifest.started_at = now_iso()
        if status in TERMINAL:
            manifest.finished_at = now_iso()
            manifest.progress = None
        self.save(manifest)
        return manifest

    def save(self, manifest: Manifest) -> None:
        """Persist a manifest. If the disk refuses (full), memory still moves on, so status
        stays truthful, and the write is retried with the next save."""
        copy = manifest.model_copy(deep=True)
        with self._lock:
            self._remember(copy)
            copy = self._with_progress(copy, written=True)
        with self._io:
            try:
                write_json(self.path(manifest.job_id), copy.to_json())
            except OSError as exc:
                self.write_error = exc
                with self._lock:
                    self._unsaved[manifest.job_id] = copy
                raise
            self.write_error = None
            self._note_finished(copy)
            with self._lock:
                self._unsaved.pop(manifest.job_id, None)
                pending = list(self._unsaved.values())
            for stale in pending:
                try:
                    write_json(self.path(stale.job_id), stale.to_json())
                except OSError:
                    return
                self._note_finished(stale)
                with self._lock:
                    if self._unsaved.get(stale.job_id) is stale:
                        del self._unsaved[stale.job_id]

    def _note_finished(self, m: Manifest) -> None:
        """A final manifest is on disk: add its line to the finished-jobs file (the next
        start reads that line instead of the manifest). Best effort: without the line, the
        next start reads the manifest. Call holding `_io`, right after the write."""
        if not m.terminal:
            return
        try:
            inode = os.stat(self.path(m.job_id)).st_ino
        except OSError:
            return
        self._finished.append(Finished(m.job_id, m.status, m.finished_at or "", str(inode), m.source))

    # -- live progress -----------------------------------------------------------------

    def follow(self, job_id: str, progress: Progress) -> None:
        """Serve a job's progress with its manifest from now until `unfollow`: while it
        runs, and after its status is final while its connector still finishes (moving
        originals); only memory has the latter, the file's final state has no progress."""
        with self._lock:
            self._progress[job_id] = (progress, [-1])

    def unfollow(self, job_id: str) -> None:
        with self._lock:
            self._progress.pop(job_id, None)

    def write_progress(self) -> int:
        """Rewrite the manifest of every running job whose progress moved since it was last
        written (not fsync'ed: it is a view, and the next commit's save is durable)."""
        with self._lock:
            moved = [job_id for job_id, (meter, written) in self._progress.items() if meter.version != written[0]]
        count = 0
        for job_id in moved:
            with self._io:
                with self._lock:
                    live = self._live.get(job_id)
                    if live is None or job_id in self._unsaved:
                        continue
                    copy = self._with_progress(live, written=True)
                try:
                    write_json(self.path(job_id), copy.to_json(), durable=False)
                except OSError as exc:
                    self.write_error = exc
                    continue
            count += 1
        return count

    def _with_progress(self, m: Manifest, written: bool = False) -> Manifest:
        """`m` with its live progress (a shallow copy), or `m` itself when it has none;
        `written`: this copy is going to disk. Call with the lock held."""
        followed = self._progress.get(m.job_id)
        if followed is None or (written and m.terminal):
            return m
        meter, on_disk = followed
        if written:
            on_disk[0] = meter.version
        return m.model_copy(update={"progress": LiveProgress(**meter.snapshot())})

    def path(self, job_id: str) -> Path:
        if not is_valid_id(job_id):
            raise UsageError(f"malformed job id {job_id[:80]!r}")
        return self.dir / f"{job_id}.json"

    def items_path(self, manifest: Manifest) -> Path:
        return self.dir / manifest.items_file

    # -- memory (call with the lock held) ---------------------------------------------

    def _remember(self, m: Manifest, cache: bool = True) -> None:
        """Index a manifest's newest state; hold it in full only while it is live (or,
        with `cache`, as one of the recently used finished ones)."""
        self._index.put(m.job_id, m.source, m.status)
        if m.terminal:
            self._live.pop(m.job_id, None)
            if cache:
                self._cache_put(m)
            self._note_success(m)
        else:
            self._live[m.job_id] = m

    def _cache_put(self, m: Manifest) -> None:
        self._cache[m.job_id] = m
        self._cache.move_to_end(m.job_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _in_memory(self, job_id: str) -> Manifest | None:
        for held in (self._unsaved, self._live):
            if job_id in held:
                return held[job_id]
        m = self._cache.get(job_id)
        if m is not None:
            self._cache.move_to_end(job_id)
        return m

    def _note_success(self, m: Manifest) -> None:
        if m.status == "succeeded" and m.finished_at:
            finished = parse_iso(m.finished_at).timestamp()
            if finished >= self._last_success.get(m.source, (float("-inf"), ""))[0]:
                self._last_success[m.source] = (finished, m.job_id)

    def _forget(self, job_id: str) -> None:
        """An indexed manifest is gone or unreadable on disk: stop listing it."""
        with self._lock:
            if job_id not in self._live and job_id not in self._unsaved:
                self._index.discard(job_id)

    # -- reading ----------------------------------------------------------------------

    def load_all(self) -> int:
        """Index every manifest on disk (at start, or for CLI reads); returns how many.
        Only live jobs stay in memory in full. A finished job whose line in the finished-jobs
        file matches its manifest file is indexed from that line; every other manifest is
        read, and the file is mended for the next start."""
        names = self._scan_dir()
        counted = _Counted()
        for entry in self._finished.entries():
            if entry is None:
                counted.bad += 1
            elif names.get(entry.job_id) == entry.inode:
                del names[entry.job_id]  # a second line for it no longer counts
                counted.add(entry)
            else:
                counted.stale += 1
        found, others, bad_names = self._read_manifests(sorted(names.items()))
        for entry in found:
            counted.add(entry)
        with self._lock:
            self._index, self._live, self._cache = JobIndex(), {}, OrderedDict()
            self._index.load(counted.groups)
            self._last_success = counted.last_success()
            for m in others:
                self._remember(m, cache=False)  # the cache fills with what is asked for
            for m in self._unsaved.values():  # this process's newest state wins over the disk's
                self._remember(m)
            self.unreadable = bad_names
            count = len(self._index)
        self._mend_finished(counted, found)
        return count

    def _scan_dir(self) -> dict[str, str]:
        """Every manifest's job id → the inode of its file (as text); a crash's temp files go."""
        names = {}
        for entry in os.scandir(self.dir):
            name = entry.name
            if name.startswith("."):
                if name.endswith(".tmp"):
                    unlink_quietly(Path(entry.path))
            elif name.endswith(".json"):
                names[name[:-5]] = str(entry.inode())
        return names

    def _read_manifests(self, unread: list[tuple[str, str]]) -> tuple[list[Finished], list[Manifest], list[str]]:
        """Read the manifests the finished-jobs file did not answer for: the lines the
        finished ones should have, the other manifests (live ones), and the names of those
        that could not be read."""
        found, others, bad = [], [], []
        for job_id, inode in unread:
            m = _read(self.dir / f"{job_id}.json")
            if m is None:
                bad.append(f"{job_id}.json")
            elif m.terminal and m.job_id == job_id:
                found.append(Finished(m.job_id, m.status, m.finished_at or "", inode, m.source))
            else:
                others.append(m)
        return found, others, bad

    def _mend_finished(self, counted: "_Counted", found: list[Finished]) -> None:
        """Append the lines the finished-jobs file lacked; rewrite it whole instead when it
        has a torn or malformed line, or many that no longer count (expired jobs)."""
        if counted.bad or counted.stale > max(100, counted.total // 10):
            names = self._scan_dir()
            keep = {e.job_id: e for e in self._finished.entries() if e is not None and names.get(e.job_id) == e.inode}
            keep.update((e.job_id, e) for e in found)
            self._finished.rewrite(sorted(keep.values()))
            return
        for entry in found:
            if not self._finished.append(entry):
                return

    def get(self, job_id: str) -> Manifest:
        path = self.path(job_id)  # validates before touching the disk
        with self._lock:
            cached = self._in_memory(job_id)
            if cached is not None:
                cached = self._with_progress(cached)
        if cached is not None:
            return cached.model_copy(deep=True)
        try:
            m = Manifest.model_validate(json.loads(path.read_bytes()))
        except FileNotFoundError:
            raise NotFoundError(f"no job {job_id}") from None
        self._keep_if_final(m)
        return m.model_copy(deep=True)

    def _keep_if_final(self, m: Manifest) -> None:
        """Cache a manifest read from disk if it can no longer change, and only if it is
        not indexed as live (then memory, not this file, has its newest state)."""
        if m.terminal:
            with self._lock:
                if m.job_id not in self._live and m.job_id not in self._unsaved:
                    self._cache_put(m)

    def list(self, *, source=None, status=None, limit: int = 50, before: str | None = None) -> list[Manifest]:
        """Jobs newest first, filtered; the manifests returned are shared: do not modify them."""
        with self._lock:
            picked = [(job_id, self._in_memory(job_id))
                      for job_id in itertools.islice(self._index.newest(source, status, before), limit)]
            picked = [(job_id, m if m is None else self._with_progress(m)) for job_id, m in picked]
        out = []
        for job_id, m in picked:
            if m is None:
                m = self._from_disk(job_id)
            if m is not None:
                out.append(m)
        return out

    def _from_disk(self, job_id: str) -> Manifest | None:
        """A finished job's manifest, read back for a listing; None if it vanished."""
        m = _read(self.path(job_id))
        if m is None:
            self._forget(job_id)
            return None
        self._keep_if_final(m)
        return m

    def last_succeeded(self) -> list[Manifest]:
        """Each source's most recently finished succeeded job (what metrics seed from):
        O(sources), however many jobs there are."""
        with self._lock:
            ids = [job_id for _, job_id in self._last_success.values()]
        out = []
        for job_id in ids:
            try:
                out.append(self.get(job_id))
            except NotFoundError:
                continue
        return out

    def active(self) -> list[Manifest]:
        """Copies of the queued and running jobs' manifests."""
        with self._lock:
            return [self._with_progress(m).model_copy(deep=True) for m in self._live.values()]

    def memory(self) -> dict[str, int]:
        """How many jobs are indexed and how many manifests are held in full (for tests
        and diagnostics: the full ones must stay bounded)."""
        with self._lock:
            return {"indexed": len(self._index), "live": len(self._live), "cached": len(self._cache),
                    "unsaved": len(self._unsaved)}

    def expire(self, older_than: float, now: float | None = None) -> int:
        """Delete the records (manifest and items file) of finished jobs created more than
        `older_than` seconds ago; returns how many went. Live jobs, manifests the disk has
        not taken yet, and each source's last success (metrics and status report it) stay."""
        moment = (now if now is not None else datetime.now(timezone.utc).timestamp()) - older_than
        cutoff = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        with self._lock:
            keep = {*self._live, *self._unsaved, *(job_id for _, job_id in self._last_success.values())}
            gone = self._index.drop_before(cutoff, keep)
        for job_id in gone:
            unlink_quietly(self.path(job_id))
            unlink_quietly(self.dir / _items_file(job_id))
            with self._lock:
                self._cache.pop(job_id, None)
        return len(gone)

    def recover(self) -> list[Manifest]:
        """At daemon start: jobs left queued or running by a process that died end
        failed/interrupted. A source whose lock a live process holds (a one-shot `ingestd
        ingest` running now) is left alone: its job is not stale, and ends on its own."""
        by_source: dict[str, list[Manifest]] = {}
        for manifest in self.active():
            by_source.setdefault(manifest.source, []).append(manifest)
        recovered = []
        for source, manifests in sorted(by_source.items()):
            try:
                with source_lock(self.dir.parent, source):
                    recovered += [self._interrupt(m) for m in manifests]
            except ConnectorError:
                continue
        return recovered

    def close_stale(self, source: str, previous: str | None) -> list[Manifest]:
        """Called holding `source`'s lock: every job of it still `running` belongs to a
        process that died (a live one would hold the lock). `previous` is the job the lock
        file names, which another process may have created after this one indexed the
        disk; the others are the ones this process saw at `load_all`."""
        ids = {m.job_id for m in self.active() if m.source == source and m.status == "running"}
        if previous and is_valid_id(previous):
            ids.add(previous)
        stale = []
        for job_id in sorted(ids):
            manifest = _read(self.path(job_id))
            if manifest is not None and manifest.source == source and manifest.status == "running":
                stale.append(self._interrupt(manifest))
        return stale

    def _interrupt(self, manifest: Manifest) -> Manifest:
        if manifest.status == "queued":
            manifest.status = "running"
        manifest.add_error(JobError(code=Code.INTERRUPTED,
                                    message="the ingestd process running this job stopped before it finished"))
        return self.transition(manifest, "failed")


def _items_file(job_id: str) -> str:
    return f"{job_id}.items.jsonl"


class _Counted:
    """What a start gathers from finished jobs without holding a record per job: the ids per
    (source, status), each source's newest success, and the lines that did not count."""

    def __init__(self):
        self.groups: dict[tuple[str, str], list[str]] = {}
        self._best: dict[str, tuple[str, str]] = {}  # source → (finished_at, job_id) of its newest success
        self.total = self.bad = self.stale = 0

    def add(self, e: Finished) -> None:
        self.total += 1
        group = self.groups.get((e.source, e.status))
        if group is None:
            group = self.groups[e.source, e.status] = []
        group.append(e.job_id)
        newest = self._best.get(e.source, ("", ""))
        if e.status == "succeeded" and e.finished_at and (e.finished_at, e.job_id) > newest:
            self._best[e.source] = (e.finished_at, e.job_id)  # finish times compare as text: one format

    def last_success(self) -> dict[str, tuple[float, str]]:
        return {source: (parse_iso(at).timestamp(), job_id) for source, (at, job_id) in self._best.items()}


def _read(path: Path) -> Manifest | None:
    try:
        return Manifest.model_validate(json.loads(path.read_bytes()))
    except (ValueError, ValidationError, OSError):
        return None
