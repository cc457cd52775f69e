"""One job, start to finish: connector stages → enrich → store → manifest → finish.

This is the error boundary: whatever a connector or the disk does, the job ends in a
terminal state with typed errors, and a crash at any instant leaves what was committed
consistent. Results are committed in groups (flush blobs once, one transaction, one
manifest write) because a per-file fsync would cost more than the ingest itself. The
pipeline enriches (hash, size and MIME type come from the bytes, never from a
connector's word); the store stores; the lifecycle says when the job starts and ends.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import deque
from contextlib import ExitStack
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ingestd._lib import logs
from ingestd._lib.times import iso_from_timestamp
from ingestd.errors import Code, ConnectorError, IngestdError, StoreError, io_error_code
from ingestd.jobs.items import ItemsWriter
from ingestd.jobs.items import record as item_record
from ingestd.jobs.lifecycle import Lifecycle, remove_workspace
from ingestd.jobs.locks import Held, source_lock
from ingestd.jobs.manifest import JobError, Manifest
from ingestd.jobs.outcomes import OutcomeLog
from ingestd.plugin.connector import Connector, Deleted, Event, Failed, JobContext, Outcome, Staged, Unchanged
from ingestd.store.blobs import SMALL_FILE, Stored
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from ingestd.store.enrich import detect_mime

BATCH_ITEMS = 1000
BATCH_SECONDS = 1.0  # counters a poller sees move at least this often while results arrive
DISK_FULL_ATTEMPTS = 5  # a file refused for want of space this often in a row goes to failed
MAX_IN_FLIGHT = 16  # chunks waiting for their results: bounds memory and open files
CHUNK = 16
CHUNK_BYTES = 4 << 20  # a big file goes to a thread of its own, so large files hash in parallel
CHUNK_SECONDS = 0.05  # a slow connector's files are not held back waiting for a full chunk


class Interrupted(Exception):
    """The daemon is stopping and this job ran past its shutdown timeout."""


@dataclass
class _Batch:
    """Results waiting for the next group commit, in arrival order."""

    changes: list[tuple[Staged, Change]] = field(default_factory=list)
    deletes: list[tuple[Deleted, str]] = field(default_factory=list)
    failures: list[Failed] = field(default_factory=list)
    opened: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.changes) + len(self.deletes) + len(self.failures)

    def due(self) -> bool:
        return len(self) >= BATCH_ITEMS or (len(self) > 0 and time.monotonic() - self.opened >= BATCH_SECONDS)


class NoHooks:
    def document_stored(self, document, job, cursor) -> None:
        pass

    def document_deleted(self, document, job, cursor) -> None:
        pass


@dataclass
class _OutOfSpace(Failed):
    """A file refused for want of space: counted per document, so it gives up in the end."""

    doc_id: str = ""
    size: int = 0


class Pipeline:
    def __init__(self, store: Store, lifecycle: Lifecycle, state_dir: Path, hooks=None, threads: int = 4):
        self.store = store
        self.lifecycle = lifecycle
        self.jobs = lifecycle.jobs
        self.state_dir = state_dir
        self.hooks = hooks or NoHooks()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="enrich")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run(self, manifest: Manifest, connector: Connector, *, stop: threading.Event | None = None,
            hint: list[str] | None = None, held: Held | None = None) -> Manifest:
        """Run a created job to its end under its source's lock (`held`, when the caller
        took it already), then tell the lifecycle it is done. The lock comes first: a job
        is `running` only while its process holds the lock, so a `running` job whose lock
        is free was left by a process that died. Raises only what the lifecycle itself
        could not record (the caller fails the job then)."""
        log = logs.get(job_id=manifest.job_id, source=manifest.source)
        ctx = JobContext(job_id=manifest.job_id, source=connector.source, state_dir=self.state_dir,
                         stop=stop or threading.Event(), log=log, hint=hint)
        result = self._locked(manifest, ctx, connector, held)
        self.lifecycle.done(result, hint)
        return result

    def _locked(self, manifest: Manifest, ctx: JobContext, connector: Connector, held: Held | None) -> Manifest:
        with ExitStack() as stack:
            try:
                held = held or stack.enter_context(source_lock(self.state_dir, manifest.source))
            except ConnectorError as exc:  # another process holds the source
                run = _Run(self, manifest, ctx, ctx.log)
                run.job_error = JobError(code=exc.code, message=exc.message)
                return run.close(connector, staged=False)
            self.lifecycle.close_stale(manifest.source, held.previous)
            held.claim(manifest.job_id)
            self.lifecycle.start(manifest, ctx.progress)
            ctx.log.info("job started", kind=manifest.kind, trigger=manifest.trigger)
            run = _Run(self, manifest, ctx, ctx.log)
            _guarded(run, lambda: run.consume(connector.stage(ctx)))
            # finish runs under the lock too: the next job of this source must see the
            # cursor this one saves
            return run.close(connector)


def _guarded(run: "_Run", step) -> None:
    """Run a step, turning whatever it raises into the job's typed error."""
    try:
        step()
    except Interrupted:
        run.job_error = JobError(code=Code.INTERRUPTED, message="stopped by a signal before the job finished")
    except ConnectorError as exc:
        run.job_error = JobError(code=exc.code, message=exc.message, item=exc.item, request_id=exc.request_id)
    except OSError as exc:
        run.job_error = JobError(code=io_error_code(exc), message=f"{exc.strerror or exc}")
    except IngestdError as exc:
        run.job_error = JobError(code=getattr(exc, "code", Code.INTERNAL), message=str(exc))
    except Exception:
        run.log.exception("job crashed")
        run.job_error = JobError(code=Code.INTERNAL, message="internal error; the daemon log has the traceback")


class _Run:
    """The mutable state of one job while it runs."""

    def __init__(self, pipeline: Pipeline, manifest: Manifest, ctx: JobContext, log):
        self.p = pipeline
        self.manifest = manifest
        self.ctx = ctx
        self.log = log
        self.batch = _Batch()
        self.outcomes = OutcomeLog(pipeline.state_dir / "workspace")  # streams to disk past a few thousand
        self.items = ItemsWriter(pipeline.jobs.items_path(manifest))
        self.job_error: JobError | None = None
        self.verbose = logging.getLogger("ingestd").isEnabledFor(logging.INFO)  # per-item lines
        self.sizes = _SizeGuess()

    def consume(self, events) -> None:
        """Feed staged files to the enrich threads in chunks, keep results in arrival
        order, commit in groups. While the connector is busy elsewhere (a long download,
        a slow listing), a heartbeat takes the results that are ready and commits them,
        so counters move at least every BATCH_SECONDS."""
        self.pending: deque[Future | Event] = deque()
        self.chunk = _Chunker(self.sizes)
        self.mutex = threading.Lock()  # the job thread and the heartbeat take turns
        self.fault: BaseException | None = None
        beat = _Heartbeat(self._beat)
        try:
            for event in events:
                with self.mutex:
                    self._admit_event(event)
                if self.ctx.stop.is_set():
                    break
        finally:
            beat.stop()
            # even when the connector raises, what it staged before is recorded, not dropped
            with self.mutex:
                self.ctx.progress.started_storing()
                self._submit_chunk()
                while self.pending:
                    self._take(self.pending.popleft())
        if self.fault is not None:
            raise self.fault
        if self.ctx.stop.is_set():
            raise Interrupted

    def _admit_event(self, event: Event) -> None:
        if self.fault is not None:
            raise self.fault
        self.manifest.counters.discovered += 1
        if self.manifest.counters.discovered == 1:
            self.ctx.progress.started_storing()
        if isinstance(event, Staged):
            if self.chunk.add(event):
                self._submit_chunk()
        else:
            self._submit_chunk()
            self.pending.append(event)
        while len(self.pending) > MAX_IN_FLIGHT or (self.pending and _ready(self.pending[0])):
            self._take(self.pending.popleft())

    def _submit_chunk(self) -> None:
        if self.chunk.files:
            self.pending.append(self.p._pool.submit(self._enrich_many, self.chunk.take()))

    def _beat(self) -> None:
        """From the heartbeat thread: never waits for the job thread, never on a result."""
        if not self.mutex.acquire(blocking=False):
            return
        try:
            if self.fault is not None:
                return
            if self.chunk.stale():
                self._submit_chunk()
            while self.pending and _ready(self.pending[0]):
                self._take(self.pending.popleft())
            if self.batch.due():
                self.commit()
        except BaseException as exc:  # the job thread raises it as its own, next time it looks
            self.fault = exc
        finally:
            self.mutex.release()

    def _enrich_many(self, events: list[Staged]) -> list:
        results = [self._enrich(ev) for ev in events]
        # bytes core copied itself (a connector counts what it downloads); a big file's
        # were counted as they were read
        small = sum(r[1].blob.size for r in results
                    if isinstance(r, tuple) and not r[0].owned and r[0].path is not None and r[1].blob.size <= SMALL_FILE)
        if small:
            self.ctx.progress.advance(bytes=small)
        return results

    def _take(self, item, counted: bool = False) -> None:
        if isinstance(item, Future):
            results = item.result()
            self.ctx.progress.advance(items=len(results))
            for result in results:
                self._take(result, counted=True)
            return
        result = item
        if not counted:
            self.ctx.progress.advance(items=1)
        if isinstance(result, Unchanged):  # known to the connector, not read: counted, nothing else
            self.manifest.counters.unchanged += 1
        elif isinstance(result, Failed):
            self.batch.failures.append(result)
        elif isinstance(result, Deleted):
            doc_id = doc_id_for(self.manifest.source, result.identity or result.origin_uri)
            self.batch.deletes.append((result, doc_id))
        else:
            _, change = result
            self.batch.changes.append(result)
            self.sizes.learn(change.blob.size)
        if self.batch.due():
            self.commit()

    def _enrich(self, ev: Staged) -> tuple[Staged, Change] | Failed:
        doc_id = doc_id_for(self.manifest.source, ev.identity or ev.origin_uri)
        try:
            stored = self._store(ev)
        except _Refused as exc:
            return Failed(ev.origin_uri, exc.code, exc.message, skip=exc.skip, token=ev.token)
        except (ConnectorError, StoreError) as exc:
            return self._failed(ev, doc_id, exc.code, getattr(exc, "message", None) or str(exc))
        except OSError as exc:
            return self._failed(ev, doc_id, io_error_code(exc), exc.strerror or str(exc))
        blob = Blob(stored.sha256, stored.size, detect_mime(stored.head, ev.name))
        change = Change(
            doc_id=doc_id, source=self.manifest.source, origin_uri=ev.origin_uri, blob=blob,
            job_id=self.manifest.job_id, source_modified_at=ev.source_modified_at, metadata=ev.metadata,
        )
        return ev, change

    def _store(self, ev: Staged) -> Stored:
        blobs = self.p.store.blobs
        if ev.path is None:  # re-point: the bytes are already in the store, as big as their records say
            sha = ev.sha256 or ""
            return blobs.existing(sha, self.p.store.recorded_size(sha))
        if ev.owned:  # moved in, hashed on the way: a connector's sha256 and size are claims
            return blobs.adopt(Path(ev.path), sha256=ev.sha256, size=ev.size)
        stored, modified = self._copy_in(ev)
        ev.source_modified_at = ev.source_modified_at or modified
        return stored

    def _failed(self, ev: Staged, doc_id: str, code: Code, message: str) -> Failed:
        if code == Code.DISK_FULL:
            return _OutOfSpace(ev.origin_uri, code, message, token=ev.token, doc_id=doc_id, size=ev.size or 0)
        return Failed(ev.origin_uri, code, message, token=ev.token)

    def _copy_in(self, ev: Staged) -> tuple[Stored, str]:
        """Open without following symlinks or blocking on FIFOs, check, copy, re-check."""
        fd, before = _open_staged(ev)
        try:
            _admit(ev, before)
            ev.size = before.st_size
            try:
                stored = self.p.store.blobs.put_file(fd, limit=ev.max_size, size_hint=before.st_size,
                                                     progress=self._bytes_moved)
            except ValueError as exc:
                raise _Refused(Code.TOO_LARGE, str(exc)) from None
            _unchanged_since(fd, before)
        finally:
            os.close(fd)
        return stored, iso_from_timestamp(before.st_mtime)

    def _bytes_moved(self, n: int) -> None:
        self.ctx.progress.advance(bytes=n)

    def commit(self) -> None:
        self.manifest.counters.filtered = self.ctx.filtered
        batch, self.batch = self.batch, _Batch()
        if not len(batch):
            return
        if batch.changes:
            self.p.store.flush()  # blobs durable before any record names them
        committed = self.p.store.commit(
            [c for _, c in batch.changes], [(d, self.manifest.job_id) for _, d in batch.deletes]
        )
        for (ev, change), result in zip(batch.changes, committed.done):
            self._record(Outcome(ev, result, change.doc_id, change.blob.sha256), change)
        for (ev, doc_id), result in zip(batch.deletes, committed.gone):
            self._record(Outcome(ev, "deleted" if result == "deleted" else "unchanged", doc_id))
        self._judge_space([f for f in batch.failures if isinstance(f, _OutOfSpace)])
        for ev in batch.failures:
            self._record(Outcome(ev, "skipped" if ev.skip else "failed", code=ev.code, message=ev.message))
        self.items.flush()
        self.p.jobs.save(self.manifest)
        # hooks after the records and the manifest are durable, in feed order
        for (_, change), entry in zip(batch.changes, committed.changed):
            if entry is not None:  # a new version: content, or a metadata version
                self.p.hooks.document_stored(change, self.manifest, entry.cursor)
        for entry in committed.deleted:
            if entry is not None:
                self.p.hooks.document_deleted(entry, self.manifest, entry.cursor)

    def _judge_space(self, refused: list[_OutOfSpace]) -> None:
        """A file refused for space is retried later (`disk_full`), until it has been refused
        DISK_FULL_ATTEMPTS times in a row: then it fails for good (`too_large`, which sends a
        drop folder's original to `failed/`), rather than fill the disk again and again."""
        if not refused:
            return
        try:
            attempts = self.p.store.note_refusals([(f.doc_id, f.size) for f in refused])
        except StoreError:
            return  # not even that fits: it stays a passing failure
        for f, n in zip(refused, attempts):
            if n >= DISK_FULL_ATTEMPTS:
                f.code = Code.TOO_LARGE
                f.message = f"does not fit on the state disk; gave up after {n} attempts: {f.message}"
            else:
                f.message = f"{f.message} (attempt {n} of {DISK_FULL_ATTEMPTS})"

    def _record(self, outcome: Outcome, change: Change | None = None) -> None:
        c = self.manifest.counters
        setattr(c, outcome.outcome, getattr(c, outcome.outcome) + 1)
        self.outcomes.append(outcome)
        ev = outcome.event
        record = item_record(outcome, change)
        if record is None:  # unchanged: counted, not listed in the items file
            if self.verbose:
                self.log.info("document unchanged", origin_uri=ev.origin_uri, doc_id=outcome.doc_id)
            return
        if change is not None:
            c.bytes += change.blob.size
            if self.verbose:
                self.log.info("document stored", **record)
        elif isinstance(ev, Failed):
            self.manifest.add_error(JobError(code=ev.code, message=ev.message, item=ev.origin_uri,
                                             request_id=ev.request_id))
            self.log.warning("document failed" if not ev.skip else "document skipped", **record)
        elif self.verbose:
            self.log.info("document deleted", **record)
        self.items.write(record)

    def close(self, connector: Connector, staged: bool = True) -> Manifest:
        m = self.manifest
        committed = staged
        try:
            self.commit()
        except (OSError, IngestdError) as exc:
            committed = False
            code = io_error_code(exc) if isinstance(exc, OSError) else getattr(exc, "code", Code.IO)
            self.job_error = self.job_error or JobError(code=code, message=f"could not commit results: {exc}")
        finally:
            self.items.close()
        if self.job_error is not None:
            m.add_error(self.job_error)
        status = "failed" if self.job_error else ("partial" if m.counters.failed else "succeeded")
        try:
            self.p.lifecycle.settle(m, status)
        except OSError as exc:
            # the index has the final state; the file is rewritten with the next save that
            # succeeds, and until then the connector must not act on the job's results
            committed = False
            self.log.error("manifest could not be written", error=exc.strerror, code=io_error_code(exc).value)
        if committed:
            self.ctx.progress.phase("finishing")
            try:
                connector.finish(self.ctx, self.outcomes, status)
            except Exception:
                self.log.exception("connector finish failed")
        self.outcomes.close()
        _tidy_workspace(self.ctx, status, self.job_error)
        self.log.info("job finished", status=status, counters=m.counters.model_dump(), duration_s=m.duration_s(),
                      **({"error": self.job_error.code.value, "message": self.job_error.message} if self.job_error else {}))
        return m


class _Chunker:
    """Groups staged files into one task for an enrich thread. Several small files per
    task make fewer hand-offs than one each; but a task holds no more than a few MiB (by
    the best guess of the sizes), so big files go to threads of their own and hash in
    parallel; and a slow connector's files are not held back waiting for a full chunk."""

    def __init__(self, sizes: "_SizeGuess"):
        self.sizes = sizes
        self.files: list[Staged] = []
        self.bytes = 0
        self.opened = 0.0

    def add(self, ev: Staged) -> bool:
        """Add a file; True when the chunk should go now."""
        if not self.files:
            self.opened = time.monotonic()
        self.files.append(ev)
        self.bytes += ev.size if ev.size is not None else self.sizes.guess()
        return (len(self.files) >= CHUNK or self.bytes >= CHUNK_BYTES
                or time.monotonic() - self.opened > CHUNK_SECONDS)

    def take(self) -> list[Staged]:
        files, self.files, self.bytes = self.files, [], 0
        return files

    def stale(self) -> bool:
        return bool(self.files) and time.monotonic() - self.opened > CHUNK_SECONDS


class _Heartbeat:
    """Calls `beat` every BATCH_SECONDS on a thread of its own until stopped."""

    def __init__(self, beat):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(beat,), name="commit-beat", daemon=True)
        self._thread.start()

    def _run(self, beat) -> None:
        while not self._stop.wait(BATCH_SECONDS):
            beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _SizeGuess:
    """The size to assume for a staged file whose connector did not say (a drop folder
    does not stat ahead of core): the job's average so far. Until the first results are
    in, assume big, so a job of a few large files starts them on separate threads."""

    def __init__(self):
        self.files = self.bytes = 0

    def learn(self, size: int) -> None:
        self.files += 1
        self.bytes += size

    def guess(self) -> int:
        return self.bytes // self.files if self.files else CHUNK_BYTES


class _Refused(Exception):
    """A staged file core will not take; `skip` marks a deliberate refusal, not a failure."""

    def __init__(self, code: Code, message: str, skip: bool = False):
        self.code, self.message, self.skip = code, message, skip
        super().__init__(message)


def _open(ev: Staged, flags: int) -> tuple[int, os.stat_result]:
    """The connector's own opener (confined to its folder) when it has one."""
    if ev.opener is not None:
        return ev.opener(flags)
    fd = os.open(ev.path, flags)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _open_staged(ev: Staged) -> tuple[int, os.stat_result]:
    """Open a staged file without following symlinks or blocking on FIFOs, through the
    connector's confined opener when it has one: every copy-in (embedded or cluster) goes
    through here, so none re-resolves a path a drop-folder writer can swap."""
    try:
        return _open(ev, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Refused(Code.NOT_FOUND, "vanished before it could be read", skip=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused(Code.SYMLINK, "symlinks are not followed", skip=True) from None
        raise


def _admit(ev: Staged, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _Refused(Code.UNSUPPORTED, "not a regular file", skip=True)
    if st.st_nlink > 1 and not ev.allow_hardlinks:
        raise _Refused(Code.HARDLINK, f"has {st.st_nlink} names (a hard link); copy it in instead", skip=True)
    if st.st_size == 0 and not ev.allow_empty:
        raise _Refused(Code.EMPTY, "zero-byte file", skip=True)
    if ev.max_size is not None and st.st_size > ev.max_size:
        raise _Refused(Code.TOO_LARGE, f"{st.st_size} bytes is over the {ev.max_size}-byte limit")


def _tidy_workspace(ctx: JobContext, status: str, error: JobError | None) -> None:
    """A succeeded or interrupted job's workspace is garbage (an interrupted download is
    only a part); a failed one's is kept for inspection (and swept after
    `daemon.workspace_retention`, see housekeeping)."""
    if status == "succeeded" or (error is not None and error.code == Code.INTERRUPTED):
        remove_workspace(ctx.state_dir, ctx.job_id)


def _unchanged_since(fd: int, before: os.stat_result) -> None:
    """The re-check after staging: a file written to while we read it is not taken
    half-done; it is left in place and taken once it settles."""
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        raise ConnectorError(Code.TRANSIENT, "file changed while being read; it will be taken when it settles")


def _ready(item) -> bool:
    return not isinstance(item, Future) or item.done()
