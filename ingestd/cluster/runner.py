"""One claimed job on one instance: connector → hash → blob store → fenced catalogue
commit (with the items' records, `job_items`, in the same transaction) → manifest in the
database.

Phase 1 of cluster mode runs this instead of `jobs.pipeline` (whose store and job store
are the embedded ones); the two share the connector contract and the record rules, not
code, until the job-store and feed seams land (docs/cluster.md).

**Fenced throughout.** A `Keeper` renews the lease while the job runs; every group
commit, progress update and the final settle check the fence in their own transaction.
When the lease is lost (the heartbeat found it taken, or could not reach the database
for ttl/2) the job stops, its database socket is cut under whatever was blocked on it,
and it ends `failed`/`lease_lost` unless the reaper recorded it first. Blobs uploaded
before the loss stay in the store (content-addressed, harmless); no record names them
unless the new holder commits the same content again.

Sync state: the connector's state directory is restored from the source's current
snapshot before the job when this instance's copy is not it, and published (fenced)
after the connector's `finish`, before the settle: the next holder, on any host, starts
from this job's cursor. A job that dies before publishing leaves the previous cursor
current: its successor re-fetches, and the catalogue's commit turns what it already has
into `unchanged` (fetch at-least-once, catalogue exactly-once).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from ingestd._lib import logs
from ingestd.cluster import catalogue, items, jobs, sync_state
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.keeper import Keeper, cut
from ingestd.cluster.leases import LeaseLost
from ingestd.errors import Code, ConnectorError, IngestdError, io_error_code
from ingestd.jobs import items as items_file
from ingestd.jobs.manifest import JobError, Manifest
# one set of rules for what core takes from a connector, embedded or not (pipeline-private
# today; a shared module once the job-lifecycle work settles where they live)
from ingestd.jobs.pipeline import _admit, _Batch, _open_staged, _Refused, _unchanged_since
from ingestd.plugin.connector import Connector, Deleted, Failed, JobContext, Outcome, Staged
from ingestd.store.catalogue import Blob, Change, doc_id_for
from ingestd.store.blobs import measure
from ingestd.store.enrich import detect_mime
from ingestd.store.hashing import copy_hashing

class Runner:
    """Runs claims for one instance: `run(claim, connector)` returns the job's final manifest."""

    def __init__(self, database, blobs: BlobStore, state_dir, ttl: float):
        self.database = database
        self.blobs = blobs
        self.state_dir = state_dir
        self.ttl = ttl

    def _connect(self, purpose: str):
        return self.database.connect(autocommit=True, purpose=purpose)

    def run(self, claim: jobs.Claim, connector: Connector, stop: threading.Event,
            hint: list[str] | None = None) -> Manifest:
        """`stop` is the job's: the daemon sets it to stop the job (shutdown), the keeper
        when the lease is lost (then `keeper.lost` says which). `hint`: a watch job's
        settled paths (`JobContext.hint`)."""
        manifest, lease = claim.manifest, claim.lease
        log = logs.get("ingestd.cluster", job_id=manifest.job_id, source=manifest.source)
        keeper = Keeper(lambda: self._connect("lease"), lease, self.ttl, stop).start()
        conn = self._connect("job")
        keeper.on_lost.append(lambda: cut(conn))
        ctx = JobContext(job_id=manifest.job_id, source=connector.source, state_dir=self.state_dir, stop=stop, log=log,
                         hint=hint)
        job = _Job(self, conn, claim, ctx, log)
        log.info("job started", kind=manifest.kind, trigger=manifest.trigger, fence=lease.fence)
        state = self.state_dir / "sources" / manifest.source  # the connector's cursors (ctx.source_state)
        try:
            try:
                sync_state.restore(conn, self.blobs, manifest.source, state)  # the newest holder's cursor
                job.consume(connector.stage(ctx))
            except Exception as exc:  # noqa: BLE001 - the job's boundary: recorded, then settled
                if keeper.gone or isinstance(exc, LeaseLost):
                    raise
                job.error = _job_error(exc, log)
            if keeper.gone:
                raise _Cut(keeper.reason)
            status = job.end(stopped=stop.is_set())
            if job.error is None or job.error.code != Code.INTERRUPTED:
                self._finish(connector, ctx, job, status, log)
                sync_state.publish(conn, self.blobs, lease, state)  # fenced: only the holder's cursor counts
            jobs.settle(conn, lease, manifest)
        except Exception as exc:  # noqa: BLE001 - a lost lease, or a database that went away
            if keeper.gone or isinstance(exc, (LeaseLost, _Cut)):
                return self._lost(job, keeper.reason or str(exc), log)
            raise
        finally:
            keeper.close()
            _close(conn)
        log.info("job finished", status=status, counters=manifest.counters.model_dump(), fence=lease.fence)
        return manifest

    @staticmethod
    def _finish(connector: Connector, ctx: JobContext, job: "_Job", status: str, log) -> None:
        """The connector records the job's results in its state (before the settle, under
        the lease, so the snapshot published next is this job's)."""
        try:
            connector.finish(ctx, job.outcomes, status)
        except Exception:  # noqa: BLE001 - as embedded: a failed finish costs a re-fetch, not the job
            log.exception("connector finish failed")

    def _lost(self, job: "_Job", why: str, log) -> Manifest:
        """The lease went: record that, if the job is still ours to record (the reaper's
        `interrupted` otherwise stands), on a fresh connection."""
        log.error("job stopped: lease lost", reason=why, fence=job.claim.lease.fence)
        try:
            with self._connect("lost") as conn:
                return jobs.lost(conn, job.claim.lease, job.claim.manifest, f"lease lost: {why}")
        except Exception as exc:  # noqa: BLE001 - the database is gone too: the reaper records it
            log.warning("could not record the lost lease", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
            job.claim.manifest.status = "failed"
            return job.claim.manifest


class _Cut(Exception):
    """The job's database connection was cut by the keeper."""


class _Job:
    def __init__(self, runner: Runner, conn, claim: jobs.Claim, ctx: JobContext, log):
        self.r = runner
        self.conn = conn
        self.claim = claim
        self.manifest = claim.manifest
        self.ctx = ctx
        self.log = log
        self.batch = _Batch()
        self.outcomes: list[Outcome] = []
        self.error: JobError | None = None
        self.next_item = 0  # the job's next job_items row

    def consume(self, events) -> None:
        for event in events:
            self.manifest.counters.discovered += 1
            if isinstance(event, Staged):
                self._take(self._store(event))
            elif isinstance(event, Deleted):
                self.batch.deletes.append((event, doc_id_for(self.manifest.source, event.identity or event.origin_uri)))
            else:
                self.batch.failures.append(event)
            if self.batch.due():
                self.commit()
            if self.ctx.stop.is_set():
                break

    def _take(self, result) -> None:
        if isinstance(result, Failed):
            self.batch.failures.append(result)
        else:
            self.batch.changes.append(result)

    def _store(self, ev: Staged):
        """The staged file into the blob store, under its hash; a Change naming it. A file
        the connector owns (downloaded into the workspace) is hashed where it is, and its
        claimed sha256 and size are checked as embedded mode checks them (`integrity`). A file
        the connector does not own (a drop folder's) is copied into the workspace while it
        is hashed, opened as embedded core opens it: no symlinks followed, no FIFO waited
        on, nothing but a regular file taken, a file written to meanwhile left for later."""
        path = Path(ev.path) if ev.path is not None else None
        copy = None
        try:
            if path is None:
                return Failed(ev.origin_uri, Code.UNSUPPORTED, "re-pointing stored bytes is not supported in cluster "
                              "mode yet", token=ev.token)
            if ev.owned:  # the connector's file: hashed here, its sha256 and size are claims
                measured = measure(path, sha256=ev.sha256, size=ev.size)
                sha, size, head, upload = measured.sha256, measured.size, measured.head, path
            else:
                sha, size, head, copy = _copy_in(ev, self.ctx.workspace)
                upload = copy
            if size == 0 and not ev.allow_empty:
                raise _Refused(Code.EMPTY, "zero-byte file", skip=True)
            if ev.max_size is not None and size > ev.max_size:
                raise _Refused(Code.TOO_LARGE, f"{size} bytes is over the {ev.max_size}-byte limit")
            mime = detect_mime(head, ev.name)
            self.r.blobs.put_file(upload, sha)
        except _Refused as exc:
            return Failed(ev.origin_uri, exc.code, exc.message, skip=exc.skip, token=ev.token)
        except ConnectorError as exc:
            return Failed(ev.origin_uri, exc.code, exc.message, token=ev.token)
        except OSError as exc:
            return Failed(ev.origin_uri, io_error_code(exc), exc.strerror or str(exc), token=ev.token)
        except IngestdError as exc:  # the blob store refused or failed: this item, not the job
            return Failed(ev.origin_uri, getattr(exc, "code", Code.IO), str(exc), token=ev.token)
        finally:
            if copy is not None:
                _unlink(copy)
            if path is not None and ev.owned:
                _unlink(path)
        change = Change(doc_id=doc_id_for(self.manifest.source, ev.identity or ev.origin_uri),
                        source=self.manifest.source, origin_uri=ev.origin_uri, blob=Blob(sha, size, mime),
                        job_id=self.manifest.job_id, source_modified_at=ev.source_modified_at, metadata=ev.metadata)
        return ev, change

    def commit(self) -> None:
        """One fenced transaction for the batch's records, feed entries and item records
        (`job_items`, as the embedded items file), then the manifest's counters (fenced too)."""
        batch, self.batch = self.batch, _Batch()
        self.manifest.counters.filtered = self.ctx.filtered
        if not len(batch):
            return
        done: list[tuple[Outcome, Change | None]] = []
        after = [self.next_item]

        def records(cur, committed: catalogue.Committed) -> None:  # in the commit's transaction
            done[:] = _outcomes(batch, committed)
            listed = [r for r in (items_file.record(o, c) for o, c in done) if r is not None]
            after[0] = items.insert(cur, self.manifest.job_id, self.next_item, listed)

        catalogue.commit(self.conn, self.claim.lease, [c for _, c in batch.changes],
                         [(d, self.manifest.job_id) for _, d in batch.deletes], also=records)
        self.next_item = after[0]
        for outcome, change in done:
            self._record(outcome, change)
        jobs.update(self.conn, self.claim.lease, self.manifest)

    def _record(self, outcome: Outcome, change: Change | None = None) -> None:
        c = self.manifest.counters
        setattr(c, outcome.outcome, getattr(c, outcome.outcome) + 1)
        self.outcomes.append(outcome)
        if change is not None and outcome.outcome == "ingested":
            c.bytes += change.blob.size
        ev = outcome.event
        if isinstance(ev, Failed):  # skipped ones too, as embedded
            self.manifest.add_error(JobError(code=ev.code, message=ev.message, item=ev.origin_uri,
                                             request_id=ev.request_id))

    def end(self, stopped: bool) -> str:
        """Commit what is left and set the final status (not yet recorded)."""
        self.commit()
        if stopped and self.error is None:
            self.error = JobError(code=Code.INTERRUPTED, message="stopped by a signal before the job finished")
        if self.error is not None:
            self.manifest.add_error(self.error)
        m = self.manifest
        m.status = "failed" if self.error else ("partial" if m.counters.failed else "succeeded")
        return m.status


def _outcomes(batch: _Batch, done: catalogue.Committed) -> list[tuple[Outcome, Change | None]]:
    """The batch's outcomes in the order the embedded pipeline records them: changes,
    deletions, failures."""
    out: list[tuple[Outcome, Change | None]] = []
    for (ev, change), result in zip(batch.changes, done.outcomes):
        out.append((Outcome(ev, result, change.doc_id, change.blob.sha256), change))
    for (ev, doc_id), result in zip(batch.deletes, done.gone):
        out.append((Outcome(ev, "deleted" if result == "deleted" else "unchanged", doc_id), None))
    for ev in batch.failures:
        out.append((Outcome(ev, "skipped" if ev.skip else "failed", code=ev.code, message=ev.message), None))
    return out


def _job_error(exc: Exception, log) -> JobError:
    if isinstance(exc, ConnectorError):
        return JobError(code=exc.code, message=exc.message, item=exc.item, request_id=exc.request_id)
    if isinstance(exc, OSError):
        return JobError(code=io_error_code(exc), message=f"{exc.strerror or exc}")
    if isinstance(exc, IngestdError):
        return JobError(code=getattr(exc, "code", Code.INTERNAL), message=str(exc))
    log.exception("job crashed")
    return JobError(code=Code.INTERNAL, message="internal error; the daemon log has the traceback")


def _copy_in(ev: Staged, workspace: Path) -> tuple[str, int, bytes, Path]:
    """(sha256, size, first bytes, the workspace copy) of a file the connector does not own."""
    fd, before = _open_staged(ev)
    copy = workspace / f".upload-{uuid.uuid4().hex}"
    try:
        _admit(ev, before)  # the embedded pipeline's checks: regular, not empty, not over the limit
        dst = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            sha, size, head = copy_hashing(fd, dst, limit=ev.max_size)
        except ValueError as exc:
            raise _Refused(Code.TOO_LARGE, str(exc)) from None
        finally:
            os.close(dst)
        _unchanged_since(fd, before)
    except BaseException:
        _unlink(copy)
        raise
    finally:
        os.close(fd)
    return sha, size, head, copy


def _unlink(path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a cut connection may complain on close
        pass
