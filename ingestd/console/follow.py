"""Keeping a progress display up to date: for the job this process runs (a thread polls it)
and for jobs another process runs (polled through a feed until they end)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ingestd.console.line import LiveLines
from ingestd.errors import IngestdError
from ingestd.console.render import Meter, line
from ingestd.jobs.manifest import Manifest

REDRAW = 0.25  # seconds: a few times a second, as rsync and rclone do
ABANDONED = 2.0  # seconds a job must look abandoned before a watcher gives up on it


class JobAbandoned(IngestdError):
    """A watched job is still marked live but no process runs it."""

    def __init__(self, m: Manifest):
        super().__init__(f"job {m.job_id} is still marked {m.status}, but no process runs it any more (the one "
                         f"that did stopped without finishing it); the next job of source {m.source!r} "
                         "records it as interrupted")


def done(m: Manifest) -> bool:
    """Final status, and the connector's finish (moving originals) over too."""
    return m.terminal and m.progress is None


@contextmanager
def drawing(poll: Callable[[], Manifest | None], lines: LiveLines | None) -> Iterator[None]:
    """Redraw the line for whatever `poll` returns (the job in this process, None while
    there is none) until the block ends; then take the line away."""
    if lines is None:
        yield
        return
    stop = threading.Event()
    meter = Meter()

    def loop() -> None:
        while not stop.wait(REDRAW):
            try:
                m = poll()
                if m is not None:
                    lines.draw([line(m, meter)])
            except Exception:  # a display must never disturb the job: it goes without its line
                lines.clear()
                return

    thread = threading.Thread(target=loop, name="progress-line", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        lines.clear()


def follow_job(feed, job_id: str, lines: LiveLines | None, pause=threading.Event().wait,
               clock=time.monotonic) -> Manifest:
    """Poll `job_id` through `feed` until it is done, drawing its line; the final manifest.
    A job no process runs any more (its process was killed) ends the wait with an error
    once that has held for ABANDONED seconds, instead of waiting forever."""
    meter = Meter()
    abandoned_since = None
    try:
        while True:
            m = feed.job(job_id)
            if done(m):
                return m
            abandoned_since = (abandoned_since or clock()) if feed.abandoned(m) else None
            if abandoned_since is not None and clock() - abandoned_since >= ABANDONED:
                raise JobAbandoned(m)
            if lines:
                lines.draw([line(m, meter)])
            pause(feed.interval)
    finally:  # Ctrl-C too: the shell's prompt must not land on a half-drawn line
        if lines:
            lines.clear()


def follow_jobs(feed, source: str | None, lines: LiveLines | None, ended: Callable[[Manifest], None],
                pause=threading.Event().wait) -> int:
    """Lines for every job running or queued (of `source`), including ones that start
    meanwhile; `ended(manifest)` for each as it ends. Returns how many ended; returns once
    none is left."""
    try:
        return _follow_jobs(feed, source, lines, ended, pause)
    finally:
        if lines:
            lines.clear()


def _follow_jobs(feed, source, lines, ended, pause) -> int:
    meters: dict[str, Meter] = {}
    finished = 0
    while True:
        active = {m.job_id: m for m in feed.active(source)}
        for job_id in [j for j in meters if j not in active]:
            final = feed.job(job_id)
            if not done(final):  # between the listings' two pages: still there
                continue
            del meters[job_id]
            if lines:
                lines.clear()
            ended(final)
            finished += 1
        if not active and not meters:
            return finished
        shown = []
        for job_id, m in sorted(active.items()):
            meters.setdefault(job_id, Meter())
            shown.append(line(m, meters[job_id]))
        if lines and shown:
            lines.draw(shown)
        pause(feed.interval)
