"""One cluster instance: `ingestd run` when the config has a `[cluster]` table.

The loop, on the main thread, each tick (at most ~1 s, sooner when a NOTIFY arrives):
refresh this instance's heartbeat row, reap leases that expired anywhere, take the due
schedule ticks (`schedule.claim_due`: exactly one instance fires each), and claim queued
jobs while a worker slot is free (`jobs.claim`, SKIP LOCKED). Each claimed job runs on a
thread of its own through `runner.Runner`, under its lease.

A database that cannot be reached is not fatal: the loop logs it and tries again; the
jobs it was running stop themselves at ttl/2 (their keepers), and another instance's
reaper takes the sources over after the ttl.

Drop folders: a watched source (`local`) pinned to this instance (`node`) is watched here
as the embedded daemon watches it (`drops`); its settled files become jobs in the
database, claimed here. Other instances never watch it (nor claim its jobs).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ingestd._lib import logs
from ingestd._lib.atomic import write_json
from ingestd._lib.version import VERSION
from ingestd.cluster import driver, instances, jobs, schedule, schema
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.drops import Drops
from ingestd.cluster.keeper import cut
from ingestd.cluster.runner import Runner
from ingestd.cluster.wake import Waker
from ingestd.config import Config, Source
from ingestd.credentials import Registry
from ingestd.errors import ConfigError
from ingestd.plugin.manager import Plugins
from ingestd.plugin.options import DEFAULT_EVERY

TICK = 1.0  # seconds: the longest the loop sleeps between reaps and claims


def next_run_for(source: Source) -> Callable[[datetime], datetime]:
    """When a scheduled source runs next after `now` (the database's): `cron` or `every`."""
    options = source.options
    if getattr(options, "cron", None):
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(options.cron, timezone="UTC")
        return lambda now: trigger.get_next_fire_time(None, now)
    every = getattr(options, "every", None) or DEFAULT_EVERY
    return lambda now: now + timedelta(seconds=every)


class Node:
    def __init__(self, config: Config, plugins: Plugins, *, ready: Callable[[str], None] = lambda text: None,
                 http: Callable[["Node"], object] | None = None, watcher: Callable | None = None):
        """`http` builds the API server and `watcher(submit, busy)` the drop-folder watcher
        (`runtime.watch.Watcher`): the caller's, since the API and the runtime sit above
        this layer. Without a watcher, pinned drop folders run only when asked."""
        self.config = config
        self.started_at = time.time()
        self.http_factory = http  # builds the API server (the caller's: the API sits above this layer)
        self.http = None
        self.listeners: list[Callable] = []  # called with each job this instance finished (the API's metrics)
        self.unavailable: dict[str, str] = {}  # sources that cannot run here, and why
        self.db_ok = False
        self.cfg = config.cluster
        self.plugins = plugins
        self.ready = ready
        self.id = self.cfg.instance_id
        registry = Registry(config.credentials.registry)
        self.registry = registry
        self.database = driver.Database(self.cfg, registry, label=f"{config.path}: cluster")
        self.blobs = BlobStore.from_config(self.cfg, registry)
        self.state_dir = config.daemon.state_dir  # this instance's scratch: workspaces, connector cursors
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.runner = Runner(self.database, self.blobs, self.state_dir, self.cfg.lease_ttl)
        self.sources = {s.name: s for s in config.sources if s.enabled}
        self.connectors: dict = {}
        self.running: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self.stopping = threading.Event()
        self.log = logs.get("ingestd.cluster", instance=self.id)
        self.drops = Drops(watcher, self.database.connect, self.log) if watcher is not None else None

    # -- start -------------------------------------------------------------------------

    def _runnable(self) -> dict[str, Source]:
        """The enabled sources whose connector can run here (a missing dependency is logged)."""
        out = {}
        for name, source in self.sources.items():
            reason = self.plugins.unavailable(source.kind)  # a refused kind or plugin, a dependency
            if reason:
                self.unavailable[name] = reason
                self.log.error("source not started", source=name, kind=source.kind, reason=reason)
                continue
            out[name] = source
        return out

    def _start(self, conn) -> None:
        schema.check(conn)  # MigrationPending: `ingestd cluster init` first
        runnable = self._runnable()
        jobs.register(conn, [jobs.SourceRow(s.name, s.kind, s.node) for s in runnable.values()])
        self.schedules = {}
        for name, source in runnable.items():
            if not self.plugins.connectors[source.kind].watched:
                self.schedules[name] = next_run_for(source)
                schedule.arm(conn, name, datetime.now().astimezone())  # first run at once, unless armed
            elif source.node == self.id and self.drops is not None:
                self._watch(source)
        instances.beat(conn, self.id)

    def _connector(self, source: Source):
        """The source's connector on this instance: one, shared by its watcher and its jobs."""
        return self.connectors.get(source.name) or self.connectors.setdefault(
            source.name, self.plugins.connectors[source.kind](source, self.registry, self.state_dir))

    def _watch(self, source: Source) -> None:
        """Watch a drop folder pinned here: observer, then the start-up scan (what arrived
        while this instance was down). One that cannot be watched is reported, not fatal."""
        try:
            self.drops.add(source, self._connector(source))
        except (ConfigError, OSError) as exc:
            reason = "; ".join(exc.lines) if isinstance(exc, ConfigError) else f"{exc.strerror}: {exc.filename}"
            self.unavailable[source.name] = reason
            self.log.error("source not watched", source=source.name, reason=reason)

    def _next_run(self, name: str, now: datetime) -> datetime | None:
        nxt = self.schedules.get(name)
        return nxt(now) if nxt else None

    # -- loop --------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: self.stopping.set())
        # no reload in cluster mode yet: SIGHUP must not end the instance (its default)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        conn = self.database.connect(autocommit=True, purpose="main")
        self._start(conn)
        if self.drops is not None:
            self.drops.start()  # the folders were added by _start: their start-up scans run now
        waker = Waker(self.database.connect)
        self.db_ok = True
        if self.http_factory is not None:
            self.http = self.http_factory(self)
            self.http.start()
        write_json(self.state_dir / "daemon.json", {"pid": os.getpid(), "version": VERSION, "instance": self.id,
                                                    "http": self.http.address if self.http else None,
                                                    "started_at": self.started_at})
        self.ready(f"cluster instance {self.id}: {len(self.sources)} source(s)")
        self.log.info("ingestd cluster instance ready", sources=sorted(self.sources), lease_ttl=self.cfg.lease_ttl,
                      database=self.database.describe(), blob_store=self.cfg.blob_store)
        while not self.stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.database.connect(autocommit=True, purpose="main")
                self._guarded_tick(conn)
                self.db_ok = True
                waker.wait(TICK)
            except Exception as exc:  # noqa: BLE001 - the database away: keep trying, jobs guard themselves
                self.db_ok = False
                self.log.warning("cluster loop: database unavailable", error=_first_line(exc))
                conn = _drop(conn)
                waker.close()
                self.stopping.wait(TICK)
        self._shutdown(conn, waker)
        return 0

    def _guarded_tick(self, conn) -> None:
        """A tick whose database has gone silent (a partition: no error, no answer) is cut
        off after half a lease, so the loop reconnects instead of hanging."""
        timer = threading.Timer(self.cfg.lease_ttl / 2, cut, args=(conn,))
        timer.daemon = True
        timer.start()
        try:
            self._tick(conn)
        finally:
            timer.cancel()

    def _tick(self, conn) -> None:
        instances.beat(conn, self.id)
        if self.drops is not None:
            self.drops.refresh(conn)
        for r in jobs.reap(conn, self.id):
            self.log.warning("reaped an expired lease", source=r.failed.source, job_id=r.failed.job_id,
                             fence=r.fence, recovery=r.recovery.job_id if r.recovery else None)
        for name, job_id in schedule.claim_due(conn, self.id, self._next_run):
            self.log.info("schedule fired", source=name, job_id=job_id)
        self._reap_threads()
        while len(self.running) < self.config.daemon.workers and not self.stopping.is_set():
            claim = jobs.claim(conn, self.id, self.cfg.lease_ttl)
            if claim is None:
                return
            self._launch(claim)

    def _launch(self, claim: jobs.Claim) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self._run_job, args=(claim, stop), name=f"job-{claim.manifest.source}",
                                  daemon=True)
        self.running[claim.manifest.job_id] = (thread, stop)
        thread.start()

    def _run_job(self, claim: jobs.Claim, stop: threading.Event) -> None:
        name = claim.manifest.source
        source = self.sources.get(name)
        manifest = claim.manifest
        try:
            if source is None:
                raise RuntimeError(f"source {name!r} is not configured on instance {self.id}")
            hint = self.drops.hint(manifest.job_id) if self.drops is not None else None
            manifest = self.runner.run(claim, self._connector(source), stop, hint=hint)
            for listener in list(self.listeners):
                try:
                    listener(manifest)
                except Exception:  # noqa: BLE001 - a listener's bug must not end the job thread
                    self.log.exception("job listener failed", job_id=manifest.job_id)
        except Exception:  # noqa: BLE001 - the lease expires and the reaper records the job
            self.log.exception("job could not run", source=name, job_id=claim.manifest.job_id)
        finally:
            if self.drops is not None and name in self.drops.kinds:
                self.drops.done(manifest)  # its files back to the watcher: gone, or looked at again

    def _reap_threads(self) -> None:
        for job_id, (thread, _stop) in list(self.running.items()):
            if not thread.is_alive():
                del self.running[job_id]

    # -- stop --------------------------------------------------------------------------

    def _shutdown(self, conn, waker: Waker) -> None:
        self.log.info("stopping", running_jobs=len(self.running))
        if self.http is not None:
            self.http.drain()
        if self.drops is not None:
            self.drops.stop()  # no new watch jobs; what settled stays in the folder for the next start
        for _thread, stop in self.running.values():
            stop.set()
        for thread, _stop in self.running.values():
            thread.join(self.config.daemon.shutdown_timeout)
        waker.close()
        try:
            if conn is None or conn.closed:
                conn = self.database.connect(autocommit=True, purpose="main")
            instances.leave(conn, self.id)
        except Exception as exc:  # noqa: BLE001 - the row ages out in `cluster status`
            self.log.warning("could not leave the instance list", error=_first_line(exc))
        _drop(conn)
        for connector in self.connectors.values():
            connector.close()
        if self.http is not None:
            self.http.stop()
        try:
            (self.state_dir / "daemon.json").unlink()
        except FileNotFoundError:
            pass
        self.log.info("stopped")

    def health(self) -> dict[str, dict]:
        """`/healthz` on a cluster instance: the database as the loop last found it, the
        jobs running here, and the sources that cannot run here."""
        return {"database": {"ok": self.db_ok, "instance": self.id},
                "workers": {"ok": True, "running": len(self.running), "size": self.config.daemon.workers},
                "watchers": self._watchers(),
                "sources": {"ok": True, "unavailable": dict(self.unavailable)}}

    def _watchers(self) -> dict:
        if self.drops is None:
            return {"ok": True, "sources": {}}
        watched = self.drops.health()
        return {"ok": all(w["alive"] for w in watched.values()) and self.drops.alive(), "sources": watched}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [repr(exc)])[0]


def _drop(conn):
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    return None
