"""Every configured sink of the daemon: started with it, changed by a reload (SIGHUP adds,
removes and restarts sinks as it does sources), reset on request, stopped last but one
(before the store closes)."""

from __future__ import annotations

import threading
import time

from ingestd._lib import logs
from ingestd.config import SinkConfig
from ingestd.errors import NotFoundError
from ingestd.plugin.sink import Sink
from ingestd.sinks import cursor as cursors
from ingestd.sinks.runner import SinkRunner, SinkStatus
from ingestd.store.feed import Feed, format_cursor, parse_cursor

STOP_TIMEOUT = 5.0  # seconds a sink's batch in flight may take to finish at a stop or reload
FAILING_LONG = 900.0  # failing this long: /healthz says so (informational)


class Fleet:
    def __init__(self, feed: Feed, kinds: dict[str, type[Sink]], state_dir, registry=None,
                 refused: dict[str, str] | None = None):
        self.feed, self.kinds, self.state_dir, self.registry = feed, kinds, state_dir, registry
        self.refused = refused or {}  # sink kind → why its plugin cannot run
        self._runners: dict[str, SinkRunner] = {}
        self._lock = threading.Lock()
        self._log = logs.get("ingestd.sinks")

    def start(self, configs: tuple[SinkConfig, ...]) -> None:
        for config in configs:
            self._start(config)

    def _start(self, config: SinkConfig) -> None:
        cls = self.kinds.get(config.kind)
        reason = None if cls is not None else self.refused.get(
            config.kind, f"no installed plugin provides sink kind {config.kind!r}")
        runner = SinkRunner(config, cls, self.feed, self.state_dir, self.registry, unavailable=reason)
        with self._lock:
            self._runners[config.name] = runner
        runner.start()

    def apply(self, configs: tuple[SinkConfig, ...]) -> dict[str, list[str]]:
        """A reload: stop removed and changed sinks (after their batch in flight), start
        added and changed ones from their saved cursors. Unchanged sinks keep running."""
        fresh = {c.name: c for c in configs}
        with self._lock:
            old = {name: r.config for name, r in self._runners.items()}
        removed = [n for n in old if n not in fresh]
        changed = [n for n in old if n in fresh and fresh[n] != old[n]]
        added = [n for n in fresh if n not in old]
        for name in removed + changed:
            self._stop(name)
        for name in changed + added:
            self._start(fresh[name])
        with self._lock:  # listed in config order
            self._runners = {n: self._runners[n] for n in fresh if n in self._runners}
        return {"added": added, "removed": removed, "changed": changed}

    def _stop(self, name: str) -> None:
        with self._lock:
            runner = self._runners.pop(name, None)
        if runner is not None:
            runner.stop(STOP_TIMEOUT)

    def stop(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:  # signal every one first: they finish their batches side by side
            runner.signal_stop()
        deadline = time.monotonic() + STOP_TIMEOUT
        for runner in runners:
            runner.stop(max(0.0, deadline - time.monotonic()))

    # -- what the API and the CLI ask -----------------------------------------------------

    def statuses(self) -> list[SinkStatus]:
        head = self.feed.latest()
        with self._lock:
            runners = list(self._runners.values())
        return [r.status(head) for r in runners]

    def status(self, name: str) -> SinkStatus:
        return self._runner(name).status(self.feed.latest())

    def reset(self, name: str, to: str) -> SinkStatus:
        """Replay from `to`. Raises NotFoundError (no such sink), UsageError (a malformed
        cursor) or CursorExpired (one the feed no longer has, or has not reached)."""
        runner = self._runner(name)
        self.feed.check(to)
        to = format_cursor(parse_cursor(to))
        if runner.state == "unavailable":  # e.g. a damaged cursor file: the reset is its fix
            cursors.save(self.state_dir, name, to)
            self._start(runner.config)
            return self.status(name)
        runner.reset(to)
        return runner.status(self.feed.latest())

    def _runner(self, name: str) -> SinkRunner:
        with self._lock:
            runner = self._runners.get(name)
        if runner is None:
            raise NotFoundError(f"no sink named {name!r}; GET /sinks lists them")
        return runner

    def health(self) -> dict:
        """Informational: a sink failing for long is worth a look, but restarting the daemon
        (what a failed check leads to) would not bring its receiver back."""
        now = time.time()
        failing = {s.name: {"since": s.failing_since, "error": s.last_error.code if s.last_error else None,
                            "state": s.state}
                   for s in self.statuses()
                   if s.state in ("unavailable", "expired", "stalled")
                   or (s.failing_since is not None and now - s.failing_since >= FAILING_LONG)}
        return {"ok": True, "failing": failing}
