"""One job, start to finish: connector stages → enrich → store → manifest → finish.

This is the error boundary: whatever a connector or the disk does, the job ends in a
terminal state with typed errors, and a crash at any instant leaves what was committed
consistent. Results are committed in groups (flush blobs once, one transaction, one
manifest write) because a per-file fsync would cost more than the ingest itself.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
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
from ingestd.errors import Code, ConnectorError, IngestdError, io_error_code
from ingestd.jobs.items import ItemsWriter
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.locks import Held, source_lock
from ingestd.jobs.manifest import JobError, Manifest
from ingestd.plugin.connector import Connector, Deleted, Event, Failed, JobContext, Outcome, Staged, Unchanged
from ingestd.store.catalogue import Change, Store, doc_id_for

BATCH_ITEMS = 1000
BATCH_SECONDS = 2.0
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
        return len(self) >= BATCH_ITEMS or time.monotonic() - self.opened >= BATCH_SECONDS


class NoHooks:
    def document_stored(self, document, job) -> None:
        pass

    def job_finished(self, manifest) -> None:
        pass


class Pipeline:
    def __init__(self, store: Store, jobs: JobStore, state_dir: Path, hooks=None, threads: int = 4):
        self.store = store
        self.jobs = jobs
        self.state_dir = state_dir
        self.hooks = hooks or NoHooks()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="enrich")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run(self, manifest: Manifest, connector: Connector, *, stop: threading.Event | None = None,
            hint: list[str] | None = None, held: Held | None = None) -> Manifest:
        """Run one job under its source's lock (`held`, when the caller took it already).
        The lock comes first: a job is `running` only while its process holds the lock, so
        a `running` job whose lock is free was left by a process that died."""
        log = logs.get(job_id=manifest.job_id, source=manifest.source)
        stop = stop or threading.Event()
        ctx = JobContext(job_id=manifest.job_id, source=connector.source, state_dir=self.state_dir,
                         stop=stop, log=log, hint=hint)
        with ExitStack() as stack:
            try:
                held = held or stack.enter_context(source_lock(self.state_dir, manifest.source))
            except ConnectorError as exc:  # another process holds the source
                run = _Run(self, manifest, ctx, log)
                run.job_error = JobError(code=exc.code, message=exc.message)
                return run.close(connector, staged=False)
            self.close_stale(manifest.source, held.previous)
            held.claim(manifest.job_id)
            self.jobs.transition(manifest, "running")
            log.info("job started", kind=manifest.kind, trigger=manifest.trigger)
            run = _Run(self, manifest, ctx, log)
            _guarded(run, lambda: run.consume(connector.stage(ctx)))
            # finish runs under the lock too: the next job of this source must see the
            # cursor this one saves
            return run.close(connector)

    def close_stale(self, source: str, previous: str | None) -> None:
        """Holding `source`'s lock: end the jobs a dead process left running, and remove
        their half-done downloads."""
        for stale in self.jobs.close_stale(source, previous):
            remove_workspace(self.state_dir, stale.job_id)
            logs.get(job_id=stale.job_id, source=source).warning("recovered a job left running by a process "
                                                                 "that stopped", code=Code.INTERRUPTED.value)

    def recover(self) -> list[Manifest]:
        """At daemon start: every job a dead process left queued or running, closed."""
        recovered = self.jobs.recover()
        for manifest in recovered:
            remove_workspace(self.state_dir, manifest.job_id)
        return recovered


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
        self.outcomes: list[Outcome] = []
        self.items = ItemsWriter(pipeline.jobs.items_path(manifest))
        self.job_error: JobError | None = None
        self.verbose = logging.getLogger("ingestd").isEnabledFor(logging.INFO)  # per-item lines
        self.sizes = _SizeGuess()

    def consume(self, events) -> None:
        """Feed staged files to the enrich threads in chunks, keep results in arrival
        order, commit in groups."""
        pending: deque[Future | Event] = deque()
        chunk = _Chunker(self.sizes)

        def flush() -> None:
            if chunk.files:
                pending.append(self.p._pool.submit(self._enrich_many, chunk.take()))

        try:
            for event in events:
                self.manifest.counters.discovered += 1
                if isinstance(event, Staged):
                    if chunk.add(event):
                        flush()
                else:
                    flush()
                    pending.append(event)
                while len(pending) > MAX_IN_FLIGHT or (pending and _ready(pending[0])):
                    self._take(pending.popleft())
                if self.ctx.stop.is_set():
                    break
        finally:
            # even when the connector raises, what it staged before is recorded, not dropped
            flush()
            while pending:
                self._take(pending.popleft())
        if self.ctx.stop.is_set():
            raise Interrupted

    def _enrich_many(self, events: list[Staged]) -> list:
        return [self._enrich(ev) for ev in events]

    def _take(self, item) -> None:
        if isinstance(item, Future):
            for result in item.result():
                self._take(result)
            return
        result = item
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
        try:
            if ev.path is None:  # re-point: the bytes are already in the store
                blob = self.p.store.existing(ev.sha256 or "", ev.name)
            elif ev.owned and ev.sha256 is not None:
                blob = self.p.store.adopt(ev.path, ev.sha256, ev.size or 0, ev.name)
            else:
                blob, modified = self._copy_in(ev)
                ev.source_modified_at = ev.source_modified_at or modified
        except _Refused as exc:
            return Failed(ev.origin_uri, exc.code, exc.message, skip=exc.skip, token=ev.token)
        except ConnectorError as exc:
            return Failed(ev.origin_uri, exc.code, exc.message, token=ev.token)
        except OSError as exc:
            return Failed(ev.origin_uri, io_error_code(exc), exc.strerror or str(exc), token=ev.token)
        change = Change(
            doc_id=doc_id_for(self.manifest.source, ev.identity or ev.origin_uri), source=self.manifest.source,
            origin_uri=ev.origin_uri, blob=blob, job_id=self.manifest.job_id,
            source_modified_at=ev.source_modified_at, metadata=ev.metadata,
        )
        return ev, change

    def _copy_in(self, ev: Staged):
        """Open without following symlinks or blocking on FIFOs, check, copy, re-check."""
        try:
            fd, before = _open(ev, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Refused(Code.NOT_FOUND, "vanished before it could be read", skip=True) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused(Code.SYMLINK, "symlinks are not followed", skip=True) from None
            raise
        try:
            _admit(ev, before)
            try:
                blob = self.p.store.put_file(fd, ev.name, limit=ev.max_size, size_hint=before.st_size)
            except ValueError as exc:
                raise _Refused(Code.TOO_LARGE, str(exc)) from None
            _unchanged_since(fd, before)
        finally:
            os.close(fd)
        return blob, iso_from_timestamp(before.st_mtime)

    def commit(self) -> None:
        self.manifest.counters.filtered = self.ctx.filtered
        batch, self.batch = self.batch, _Batch()
        if not len(batch):
            return
        if batch.changes:
            self.p.store.flush()  # blobs durable before any record names them
        done, gone = self.p.store.commit(
            [c for _, c in batch.changes], [(d, self.manifest.job_id) for _, d in batch.deletes]
        )
        stored = []
        for (ev, change), result in zip(batch.changes, done):
            self._record(Outcome(ev, result, change.doc_id, change.blob.sha256), change)
            if result == "ingested":
                stored.append(change)
        for (ev, doc_id), result in zip(batch.deletes, gone):
            self._record(Outcome(ev, "deleted" if result == "deleted" else "unchanged", doc_id))
        for ev in batch.failures:
            self._record(Outcome(ev, "skipped" if ev.skip else "failed", code=ev.code, message=ev.message))
        self.items.flush()
        self.p.jobs.save(self.manifest)
        for change in stored:
            self.p.hooks.document_stored(change, self.manifest)

    def _record(self, outcome: Outcome, change: Change | None = None) -> None:
        c = self.manifest.counters
        setattr(c, outcome.outcome, getattr(c, outcome.outcome) + 1)
        self.outcomes.append(outcome)
        ev = outcome.event
        if outcome.outcome == "unchanged":  # counted, not listed in the items file
            if self.verbose:
                self.log.info("document unchanged", origin_uri=ev.origin_uri, doc_id=outcome.doc_id)
            return
        record = {"origin_uri": ev.origin_uri, "doc_id": outcome.doc_id, "outcome": outcome.outcome}
        if change is not None:
            c.bytes += change.blob.size
            record.update(sha256=change.blob.sha256, size=change.blob.size, mime=change.blob.mime)
            if self.verbose:
                self.log.info("document stored", **record)
        elif isinstance(ev, Failed):
            record.update(error=ev.code.value, message=ev.message)
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
            self.p.jobs.transition(m, status)
        except OSError as exc:
            # the index has the final state; the file is rewritten with the next save that
            # succeeds, and until then the connector must not act on the job's results
            committed = False
            self.log.error("manifest could not be written", error=exc.strerror, code=io_error_code(exc).value)
        if committed:
            try:
                connector.finish(self.ctx, self.outcomes, status)
            except Exception:
                self.log.exception("connector finish failed")
        _tidy_workspace(self.ctx, status, self.job_error)
        self.log.info("job finished", status=status, counters=m.counters.model_dump(), duration_s=m.duration_s(),
                      **({"error": self.job_error.code.value, "message": self.job_error.message} if self.job_error else {}))
        self.p.hooks.job_finished(m)
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


def remove_workspace(state_dir: Path, job_id: str) -> None:
    path = state_dir / "workspace" / job_id
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _unchanged_since(fd: int, before: os.stat_result) -> None:
    """The re-check after staging: a file written to while we read it is not taken
    half-done; it is left in place and taken once it settles."""
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        raise ConnectorError(Code.TRANSIENT, "file changed while being read; it will be taken when it settles")


def _ready(item) -> bool:
    return not isinstance(item, Future) or item.done()
