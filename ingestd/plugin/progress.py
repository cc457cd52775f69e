"""The progress seam: how far a running job has got, for a person watching it.

Writers. Each job has one `Progress` (`JobContext.progress`). Core feeds what it sees:
`started_storing` when the first results arrive (unless the connector named a phase),
one `advance(items=1)` per item it takes, the bytes it copies itself (per chunk, so one
huge file moves too), and `finishing` while the connector's `finish` runs. A connector
MAY add what only it knows: `phase("listing")` while it finds what to fetch,
`expect(items=…, bytes=…)` once the totals are known, `phase("downloading")` and
`advance(bytes=…)` as it downloads (core does not count an owned file's bytes again).
Every method is cheap and thread-safe, so download threads may call `advance` per chunk.

Readers never touch this object: they read the job's manifest, whose `progress` field is
`snapshot()` as a `LiveProgress` (phase, items_done/items_total, bytes_done/bytes_total,
updated_at; totals None when unknown) beside counters that move as results commit:
- in-process (a one-shot's progress line): `App.lifecycle.live(source)`, a copy of the
  job holding the source, fresh on every call;
- another process: `GET /ingest/{job_id}` (the daemon's memory, fresh), or the manifest
  file `jobs/<job_id>.json`, rewritten about once a second while progress moves.
`progress` is None once the job is done; its counters then say it all.
docs/progress.md is the same, for people.
"""

from __future__ import annotations

import threading
from typing import Literal

Phase = Literal["starting", "listing", "downloading", "storing", "finishing"]
PHASES: tuple[str, ...] = ("starting", "listing", "downloading", "storing", "finishing")


class Progress:
    def __init__(self):
        self._lock = threading.Lock()
        self._phase: str = "starting"
        self._items = [0, None]  # done, expected
        self._bytes = [0, None]
        self.version = 0  # grows with every change: a writer can tell whether there is news

    def phase(self, name: Phase) -> None:
        """What the job is doing now: `listing` (finding what to fetch), `downloading`;
        core sets `storing` and `finishing` (moving originals, saving cursors) itself."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {', '.join(PHASES)}")
        with self._lock:
            self._phase = name
            self.version += 1

    def expect(self, *, items: int | None = None, bytes: int | None = None) -> None:
        """Totals, once known (a finished listing): the denominator of `done of total`."""
        with self._lock:
            if items is not None:
                self._items[1] = items
            if bytes is not None:
                self._bytes[1] = bytes
            self.version += 1

    def advance(self, *, items: int = 0, bytes: int = 0) -> None:
        """Items finished and bytes moved since the last call. Core counts every item it
        takes and the bytes it copies itself; a connector counts the bytes it downloads."""
        with self._lock:
            self._items[0] += items
            self._bytes[0] += bytes
            self.version += 1

    def started_storing(self) -> None:
        """Core's: the first results are in, unless the connector said what it is doing."""
        with self._lock:
            if self._phase == "starting":
                self._phase = "storing"
                self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"phase": self._phase, "items_done": self._items[0], "items_total": self._items[1],
                    "bytes_done": self._bytes[0], "bytes_total": self._bytes[1]}
