"""How long a failing sink waits before it tries the same batch again: exponential,
capped, with jitter, so many sinks (or many daemons) pointed at one receiver that comes
back do not all knock at the same instant."""

from __future__ import annotations

import random

BASE = 0.5  # seconds before the first retry (on average 3/4 of it)
CAP = 60.0  # the longest wait between two attempts


class Backoff:
    def __init__(self, base: float = BASE, cap: float = CAP, rng: random.Random | None = None):
        self.base, self.cap = base, cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait after one more failure: half of min(cap, base·2ⁿ) plus a random part of
        the other half ("equal jitter": never zero, never above the cap)."""
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0
