"""The drop folders pinned to this instance (`node = <instance_id>`), watched as the
embedded daemon watches them, their settled files queued as cluster jobs.

The watching is the embedded watcher's (`runtime.watch`: events, settling, start-up and
periodic rescans, the connector's `taken` memory), built by the caller since `runtime`
sits above this layer. What differs is where a batch goes: `submit` queues a job in the
database (`jobs.enqueue`: the partial unique index keeps one live job per source), and
the batch's paths wait here, by job id, for this instance to claim that job (only it may:
the source is pinned to it). A batch refused because the source has a live job anywhere
(`Busy`) stays with the watcher for the next job, as embedded; so does one the database
could not take (it is not lost, it is retried once the loop reaches the database again).

`busy` is read by the settle loop many times a second, so it is a set in memory: the
watched sources with a live job, as this instance last saw them (refreshed each tick of
the instance's loop, updated at once by what happens here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ingestd.cluster import jobs
from ingestd.config import Source
from ingestd.jobs.manifest import Manifest


class Drops:
    def __init__(self, make_watcher: Callable, connect: Callable, log):
        self.watcher = make_watcher(self._submit, self._busy)
        self._connect = connect
        self.log = log
        self.kinds: dict[str, str] = {}  # watched source → its kind
        self._hints: dict[str, list[str]] = {}  # queued job id → the settled paths it was asked to take
        self._live: set[str] = set()  # watched sources with a queued or running job, anywhere
        self._lock = threading.Lock()
        self._conn = None  # the settle loop's own connection (queueing jobs)

    def add(self, source: Source, connector) -> None:
        """Watch `source`'s folder (ConfigError: it cannot be watched)."""
        self.watcher.add(source.name, connector)
        self.kinds[source.name] = source.kind

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _close(conn)

    # -- the watcher's side (its settle thread) ----------------------------------------------

    def _busy(self, source: str) -> bool:
        return source in self._live

    def _submit(self, source: str, trigger: str, hint: list[str]) -> Manifest:
        with self._lock:
            self._live.add(source)  # until the job ends, or the loop finds the source free
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect(autocommit=True, purpose="watch")
                manifest = jobs.enqueue(self._conn, source, self.kinds[source], trigger)
            except jobs.Busy:
                raise  # the watcher keeps the batch for the next job
            except Exception:
                if self._conn is not None and self._conn.broken:
                    _close(self._conn)
                    self._conn = None
                raise
            self._hints[manifest.job_id] = list(hint)
        self.log.info("watch job queued", source=source, job_id=manifest.job_id, files=len(hint))
        return manifest

    # -- the instance's side -----------------------------------------------------------------

    def hint(self, job_id: str) -> list[str] | None:
        """The paths a claimed job was queued for (None: not a watch job of this instance's,
        e.g. asked for through the API, or queued before a restart: it scans the folder)."""
        with self._lock:
            return self._hints.get(job_id)

    def done(self, manifest: Manifest) -> None:
        """A job of a watched source ended here: its files are released to the watcher
        (looked at again if still there, later when the job did not succeed)."""
        with self._lock:
            hint = self._hints.pop(manifest.job_id, None)
            self._live.discard(manifest.source)
        self.watcher.job_done(manifest.source, hint, ok=manifest.status == "succeeded")

    def refresh(self, conn) -> None:
        """Which watched sources have a live job now (the loop's tick)."""
        if not self.kinds:
            return
        rows = conn.execute("SELECT source FROM jobs WHERE status IN ('queued', 'running') AND source = ANY(%s)",
                            (sorted(self.kinds),)).fetchall()
        with self._lock:
            self._live = {r[0] for r in rows}

    def health(self) -> dict[str, dict]:
        return self.watcher.health()

    def alive(self) -> bool:
        return self.watcher.alive() or not self.kinds


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a broken connection may complain on close
        pass
