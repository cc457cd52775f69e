"""The last hour of the daemon's throughput, in memory, for the dashboard's charts.

A ring of 360 ten-second slots holding, per slot, the items handled, the bytes stored and
the errors met in it, and the deepest the job queue was seen: four fixed arrays (about
7 KiB) however long the daemon runs. Progress is counted as it happens, not when a job
ends: every slot the running jobs' counters are sampled, and a job's last stretch is
counted from its final manifest, so an hour-long job draws a line rather than one spike
at its end. Each job's already-counted totals are remembered until it finishes, so no
item is counted twice. Nothing is persisted: after a restart the chart starts empty.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ingestd.jobs.manifest import Manifest

SLOT_S = 10
SLOTS = 360  # one hour


@dataclass(frozen=True)
class Window:
    """The ring read out oldest first; `end` (Unix time) is where the newest whole slot ended."""

    slot_s: int
    end: float
    files: list[int]
    bytes: list[int]
    errors: list[int]
    queue_depth: list[int]


def _counts(m: Manifest) -> tuple[int, int, int]:
    """(items handled, bytes stored, item errors) so far, as the metrics count them."""
    c = m.counters
    return (c.ingested + c.unchanged + c.skipped + c.failed + c.deleted, c.bytes, c.failed + c.skipped)


class Throughput:
    def __init__(self, active: Callable[[], Iterable[Manifest]], depth: Callable[[], int],
                 clock: Callable[[], float] = time.time):
        self._active, self._depth, self._clock = active, depth, clock
        self._lock = threading.Lock()
        self._files = array("I", bytes(4 * SLOTS))
        self._bytes = array("Q", bytes(8 * SLOTS))
        self._errors = array("I", bytes(4 * SLOTS))
        self._queue = array("I", bytes(4 * SLOTS))
        self._slot = self._slot_of(clock())  # the slot being filled
        self._seen: dict[str, tuple[int, int, int]] = {}  # running job → what is already counted

    @staticmethod
    def _slot_of(now: float) -> int:
        return int(now // SLOT_S)

    def sample(self) -> None:
        """Count the running jobs' progress since the last sample (the scheduler calls this
        every slot). The job list is read under the lock, so a job finishing meanwhile is
        counted either here or by `job_finished`, never by both."""
        with self._lock:
            i = self._advance()
            for m in self._active():
                if m.status == "running":
                    self._add(i, m.job_id, _counts(m))
            self._queue[i] = max(self._queue[i], min(self._depth(), 0xFFFFFFFF))

    def job_finished(self, m: Manifest) -> None:
        with self._lock:
            i = self._advance()
            files, size, errors = _counts(m)
            failed = m.status == "failed"  # the job failed as a whole: one error more
            self._add(i, m.job_id, (files, size, errors + failed))
            self._seen.pop(m.job_id, None)

    def window(self) -> Window:
        """The whole slots of the last hour, oldest first (the slot being filled is left out)."""
        self.sample()
        with self._lock:
            order = [(self._slot + 1 + k) % SLOTS for k in range(SLOTS - 1)]
            return Window(SLOT_S, self._slot * SLOT_S, [self._files[k] for k in order],
                          [self._bytes[k] for k in order], [self._errors[k] for k in order],
                          [self._queue[k] for k in order])

    def _advance(self) -> int:
        """Move to the current slot, emptying the ones the clock passed; its index."""
        now = self._slot_of(self._clock())
        if now > self._slot:  # a clock set back keeps filling the current slot
            for s in range(max(self._slot + 1, now - SLOTS + 1), now + 1):
                k = s % SLOTS
                self._files[k] = self._bytes[k] = self._errors[k] = self._queue[k] = 0
            self._slot = now
        return self._slot % SLOTS

    def _add(self, i: int, job_id: str, now: tuple[int, int, int]) -> None:
        before = self._seen.get(job_id, (0, 0, 0))
        files, size, errors = (max(0, a - b) for a, b in zip(now, before))
        self._files[i] = min(self._files[i] + files, 0xFFFFFFFF)
        self._bytes[i] = min(self._bytes[i] + size, 0xFFFFFFFFFFFFFFFF)
        self._errors[i] = min(self._errors[i] + errors, 0xFFFFFFFF)
        self._seen[job_id] = tuple(max(a, b) for a, b in zip(now, before))
