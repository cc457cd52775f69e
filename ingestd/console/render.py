"""One job as a progress line: phase, items done of the total, bytes and rate, errors,
elapsed and, where a total is known, an estimate of what is left."""

from __future__ import annotations

import time
from collections import deque

from ingestd._lib.times import parse_iso
from ingestd.jobs.manifest import Manifest

STALE = 30.0  # seconds without a rewrite of a running job's file: worth saying (its process may be gone)
WINDOW = 5.0  # seconds of samples the rate is taken over: recent enough to follow a change of pace
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class Meter:
    """Rates from recent samples of a job's progress (bytes and items per second)."""

    def __init__(self):
        self._samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, items: int, nbytes: int) -> None:
        self._samples.append((now, items, nbytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW:
            self._samples.popleft()

    def rates(self) -> tuple[float, float]:
        """(items/s, bytes/s) over the window; zeros until two samples half a second apart."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        (t0, i0, b0), (t1, i1, b1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return ((i1 - i0) / span, (b1 - b0) / span) if span >= 0.5 else (0.0, 0.0)


def phase_label(m: Manifest) -> str:
    if m.status == "queued":
        return "queued"
    phase = m.progress.phase if m.progress else "finishing"
    if phase == "finishing" and m.kind == "local":
        return "moving originals"  # what the drop-folder connector's finish does
    return phase


def line(m: Manifest, meter: Meter, now: float | None = None) -> str:
    """The line for `m` as it stands; feeds `meter` so the rate follows the job."""
    elapsed = _elapsed(m)
    if m.status == "queued":
        return f"{m.source}: queued, waiting for a worker"
    p = m.progress
    items, items_total = (p.items_done, p.items_total) if p else (_taken(m), None)
    nbytes, bytes_total = (p.bytes_done, p.bytes_total) if p else (m.counters.bytes, None)
    meter.add(time.monotonic() if now is None else now, items, nbytes)
    item_rate, byte_rate = meter.rates()
    parts = [f"{m.source}: {phase_label(m)}", _of(items, items_total, count) + " items"]
    if nbytes or bytes_total is not None:  # a connector that does not count its downloads shows no "0 B"
        parts.append(_of(nbytes, bytes_total, size))
    if byte_rate:
        parts.append(f"{size(byte_rate)}/s")
    errors = len(m.errors) + m.errors_dropped  # failed and refused items, and the job's own: as the summary lists them
    parts.append(f"{count(errors)} error" + ("" if errors == 1 else "s"))
    parts.append(clock(elapsed))
    left = _left(items, items_total, item_rate, nbytes, bytes_total, byte_rate)
    if left is not None:
        parts.append(f"~{clock(left)} left")
    quiet = time.time() - parse_iso(p.updated_at).timestamp() if p else 0.0
    if quiet > STALE:  # only a file read from disk ages: the API's view is taken when asked
        parts.append(f"(no news for {clock(quiet)})")
    return "  ".join(parts)


def _taken(m: Manifest) -> int:
    c = m.counters
    return c.ingested + c.unchanged + c.skipped + c.failed + c.deleted


def _of(done: int, total: int | None, fmt) -> str:
    return fmt(done) if total is None else f"{fmt(done)}/{fmt(total)}"


def _left(items, items_total, item_rate, nbytes, bytes_total, byte_rate) -> float | None:
    """Seconds left by the bytes where their total is known (one huge file moves them
    while the items stand still), else by the items."""
    if bytes_total and byte_rate > 0:
        return max(0.0, (bytes_total - nbytes) / byte_rate)
    if items_total and item_rate > 0:
        return max(0.0, (items_total - items) / item_rate)
    return None


def _elapsed(m: Manifest) -> float:
    d = m.duration_s()
    return d if d is not None else 0.0


def count(n: int | float) -> str:
    return f"{int(n):,}"


def size(n: int | float) -> str:
    value = float(n)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def clock(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
