"""The composition root: builds every part from the Config, starts them in order, stops
them in reverse, and turns signals into actions.

Signal handlers only set a flag and wake the main loop; all real work (reload, stop,
watchdog keep-alives) happens on the main thread, outside signal context.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from ingestd._lib import logs, redact
from ingestd._lib.atomic import write_json
from ingestd._lib.times import iso_from_timestamp
from ingestd._lib.version import VERSION
from ingestd.app import App, Findings, findings, load_config
from ingestd.config import Config, Source
from ingestd.daemon_api import DaemonApi
from ingestd.errors import ConfigError
from ingestd.extract.policy import Policy
from ingestd.extract.service import Extraction
from ingestd.jobs.lifecycle import JobDone
from ingestd.jobs.manifest import Manifest
from ingestd.plugin.manager import Plugins
from ingestd.runtime import housekeeping, systemd
from ingestd.runtime.queue import Workers
from ingestd.runtime.schedule import Schedule
from ingestd.runtime.throughput import SLOT_S, Throughput
from ingestd.runtime.watch import Watcher


class Daemon:
    def __init__(self, config: Config, plugins: Plugins, config_path: Path):
        self.config_path = config_path
        self.plugins = plugins
        self.app = App(config, plugins)
        self.version = VERSION
        self.started_at = time.time()
        self.workers = Workers(self.app, config.daemon.workers)
        self.watcher = Watcher(self.submit, self._busy)
        self.schedule = Schedule(self.submit)
        # a finished job frees its files in the watcher; the API's metrics subscribe themselves
        self.app.lifecycle.subscribe(self._job_done)
        self.unavailable: dict[str, str] = {}
        self.throughput = Throughput(self.workers.jobs, self.workers.depth)  # the dashboard's charts
        self.app.lifecycle.subscribe(lambda done: self.throughput.job_finished(done.manifest))
        self.policy = Policy(plugins.extractors, config)
        # off the ingest path: woken after each job, it extracts in its own child processes
        self.extraction = Extraction(self.app.store, self.app.texts, self.policy, config.extract) \
            if self.policy.enabled else None
        self.api = DaemonApi(app=self.app, plugins=plugins, workers=self.workers, schedule=self.schedule,
                             unavailable=self.unavailable, health=self.health, submit=self.submit,
                             throughput=self.throughput.window,
                             version=self.version, started_at=self.started_at,
                             policy=self.policy, extraction=self.extraction)
        self.http = None
        self.reloads = 0
        self._flags: set[str] = set()
        self._started = False
        self._wake = threading.Event()
        self.log = logs.get("ingestd.daemon")

    @property
    def config(self) -> Config:
        return self.app.config

    def submit(self, source: str, trigger: str, hint=None) -> Manifest:
        if source in self.unavailable:  # a source the checks refused does not run, however asked
            raise ConfigError(self.unavailable[source])
        return self.workers.submit(source, trigger, hint)

    def _busy(self, source: str) -> object:
        """Whether the watcher should hold a source's settled files back for now: a job
        holds the source, or the state dir refuses job records (retried with backoff)."""
        return self.workers.busy(source) or self.app.lifecycle.deferring()

    # -- start ------------------------------------------------------------------------

    def start(self) -> None:
        state = self.app.state_dir
        self.app.store.clean_temps()
        self.app.jobs.load_all()
        interrupted = {m.source for m in self.app.lifecycle.recover()}
        self.housekeeping()
        if interrupted:
            self.log.warning("recovered interrupted jobs", sources=sorted(interrupted))
        if self.config.http.enabled:
            from ingestd.api.service import ApiServer

            # bound (and its token read) before any job can run: a busy port or a bad token
            # stops the start cleanly, and the metrics see every job from the first one
            self.http = ApiServer(self.api, self.config.http)
        self.workers.start()
        if self.extraction is not None:
            self.extraction.start()
        self.watcher.start()
        self.schedule.start()
        self.schedule.every("housekeeping", housekeeping.INTERVAL, self.housekeeping)
        self.schedule.every("throughput", SLOT_S, self.throughput.sample)
        found = self._checked(self.config)
        for source in self.config.sources:
            if source.enabled:
                self._start_source(source, found, recovering=source.name in interrupted)
        if self.http is not None:
            self.http.start()
        self._started = True
        write_json(state / "daemon.json", self.runtime_info())
        systemd.ready(self.status_line())
        self.log.info("ingestd ready", version=self.version, pid=os.getpid(),
                      http=self.http.address if self.http else None, sources=[s.name for s in self.config.sources])

    def housekeeping(self) -> None:
        cfg = self.config.daemon
        removed = housekeeping.sweep(self.app.state_dir, cfg.workspace_retention, cfg.originals_retention)
        if cfg.job_retention:
            removed["jobs"] = self.app.jobs.expire(cfg.job_retention)
        if cfg.change_retention:
            removed["changes"] = self.app.store.prune_changes(iso_from_timestamp(time.time() - cfg.change_retention))
        if any(removed.values()):
            self.log.info("housekeeping removed expired records", **removed)

    def _checked(self, config: Config) -> Findings:
        """The same checks as `check-config`: a source with problems is not started (it is
        reported unavailable, with the lines `check-config` prints); warnings are logged."""
        found = findings(config, self.plugins)
        for line in found.warnings:
            self.log.warning("config warning", detail=line)
        return found

    def _start_source(self, source: Source, found: Findings, recovering: bool = False) -> None:
        problems = found.problems.get(source.name)
        if problems:
            # free text, masked where it is made: /healthz and /sources serve it as it is
            reason = redact.scrub_text(self.plugins.unavailable(source.kind) or "; ".join(problems))
            self.unavailable[source.name] = reason
            self.log.error("source not started", source=source.name, kind=source.kind, reason=reason)
            return
        self.unavailable.pop(source.name, None)
        cls = self.plugins.connectors[source.kind]
        try:
            connector = self.app.connector(source.name)  # its plugin's constructor may raise: ConfigError
            if cls.watched:
                self.watcher.add(source.name, connector, trigger="recovery" if recovering else "watch")
            else:
                self.schedule.add(source.name, source.options, first="recovery" if recovering else "schedule")
        except (ConfigError, OSError) as exc:
            # one bad source must not keep the others from running; health reports it
            reason = "; ".join(exc.lines) if isinstance(exc, ConfigError) else f"{exc.strerror}: {exc.filename}"
            self.unavailable[source.name] = reason = redact.scrub_text(reason)
            self.log.error("source not started", source=source.name, reason=reason)

    def _stop_source(self, name: str) -> None:
        self.watcher.remove(name)
        self.schedule.remove(name)
        self.unavailable.pop(name, None)
        self.app.forget_connector(name)

    def _job_done(self, done: JobDone) -> None:
        self.watcher.job_done(done.manifest.source, done.hint, ok=done.ok)
        if self.extraction is not None and done.manifest.counters.ingested:
            self.extraction.wake()
        systemd.status(self.status_line())

    # -- main loop --------------------------------------------------------------------

    def run(self) -> int:
        for sig, flag in ((signal.SIGTERM, "stop"), (signal.SIGINT, "stop"), (signal.SIGHUP, "reload")):
            signal.signal(sig, lambda _s, _f, flag=flag: self._signal(flag))
        self.start()
        interval = systemd.watchdog_interval()
        while True:
            self._wake.wait(timeout=interval or 1.0)
            self._wake.clear()
            flags, self._flags = self._flags, set()
            if "stop" in flags:
                break
            if "reload" in flags:
                self.reload()
            if interval and self.live():
                systemd.watchdog()
        self.shutdown()
        return 0

    def _signal(self, flag: str) -> None:
        self._flags.add(flag)
        self._wake.set()

    # -- reload -----------------------------------------------------------------------

    def reload(self) -> None:
        systemd.reloading()
        if self.http is not None:
            self.http.reload()  # token rotation works even when the new config is rejected
        try:
            new = load_config(self.config_path, self.plugins)
        except ConfigError as exc:
            for line in exc.lines:
                self.log.error("reload rejected; keeping the running config", error=line)
            systemd.ready(self.status_line())
            return
        old = {s.name: s for s in self.config.sources}
        fresh = {s.name: s for s in new.sources}
        for key in ("state_dir", "workers"):
            if getattr(new.daemon, key) != getattr(self.config.daemon, key):
                self.log.warning("setting needs a restart to take effect", key=f"daemon.{key}")
        if new.http != self.config.http:
            self.log.warning("setting needs a restart to take effect", key="http")
        changed = [n for n in old if n not in fresh or fresh[n] != old[n]]
        for name in changed:
            self._stop_source(name)
        if new.extract != self.config.extract:
            self.log.warning("setting needs a restart to take effect", key="extract")
        self.app.replace_config(new)
        self.policy.replace_config(new)
        found = self._checked(new)
        for name, source in fresh.items():
            if source.enabled and (name not in old or name in changed or name in found.problems
                                   or name in self.unavailable):
                self._stop_source(name)
                self._start_source(source, found)
        self.reloads += 1
        self.log.info("config reloaded", added=sorted(set(fresh) - set(old)), removed=sorted(set(old) - set(fresh)),
                      changed=sorted(n for n in changed if n in fresh))
        systemd.ready(self.status_line())

    # -- stop -------------------------------------------------------------------------

    def shutdown(self) -> None:
        systemd.stopping()
        self.log.info("stopping", running_jobs=self.workers.running)
        if self.http is not None:
            self.http.drain()  # no new jobs over HTTP; status stays readable while jobs finish
        self.watcher.stop()
        self.schedule.stop()
        self.workers.shutdown(self.config.daemon.shutdown_timeout)
        if self.extraction is not None:
            self.extraction.stop()  # files in flight are redone at the next start
        if self.http is not None:
            self.http.stop()
        self.app.close()
        try:
            (self.app.state_dir / "daemon.json").unlink()
        except FileNotFoundError:
            pass
        self.log.info("stopped")

    # -- health -----------------------------------------------------------------------

    def health(self) -> dict:
        watchers = self.watcher.health()
        checks = {
            "workers": {"ok": self.workers.alive(), "running": self.workers.running, "queued": self.workers.depth()},
            "scheduler": {"ok": self.schedule.running(), "sources": sorted(self.schedule.names())},
            "watchers": {"ok": all(w["alive"] for w in watchers.values()), "sources": watchers},
            "settle_loop": {"ok": self.watcher.alive() or not watchers},
            "state_dir": self.app.lifecycle.health(),
            "extraction": {"ok": self.extraction is None or self.extraction.alive() or not self._started,
                           "enabled": self.extraction is not None},
            # informational: a misconfigured source is reported, but restarting the daemon
            # (which is what an unhealthy watchdog leads to) would not fix it
            "sources": {"ok": True, "unavailable": dict(self.unavailable)},
            # informational too: a refused plugin needs a fix and a restart, not a restart alone
            "plugins": {"ok": True, "problems": [asdict(p) for p in self.plugins.problems()],
                        "hooks": {name: asdict(s) for name, s in self.plugins.hooks.stats().items()}},
        }
        return checks

    def healthy(self) -> bool:
        return all(check["ok"] for check in self.health().values())

    def live(self) -> bool:
        """What the systemd watchdog keys on: the daemon's own threads. A deleted drop
        folder fails /healthz, but a restart would not bring it back."""
        checks = self.health()
        return all(checks[name]["ok"] for name in ("workers", "scheduler", "settle_loop"))

    def status_line(self) -> str:
        return (f"watching {len(self.watcher.names())} folder(s), {len(self.schedule.names())} scheduled source(s); "
                f"{self.workers.running} job(s) running")

    def runtime_info(self) -> dict:
        return {"pid": os.getpid(), "version": self.version, "http": self.http.address if self.http else None,
                "started_at": self.started_at}


def run_daemon(config: Config, plugins: Plugins, config_path: Path) -> int:
    daemon = Daemon(config, plugins, config_path)
    return daemon.run()
