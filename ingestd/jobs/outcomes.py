"""A job's outcomes, kept for the connector's `finish` without holding them all in memory.

`finish` runs once, after every result is durable, and needs each outcome with the event
the connector staged (its token says which original to move, which cursor row to write).
An outcome with its event costs ~1.4 KB of memory, so a million-file job would hold well
over a gigabyte. Here outcomes stay in memory up to `SPILL_AT`; past that, each full
buffer is pickled to an unnamed temp file (gone with the job, even after a crash) and
read back in order when `finish` iterates. Outcomes whose tokens cannot be pickled stay
in memory, as all of them did before.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ingestd.plugin.connector import Outcome

SPILL_AT = 32768  # ~45 MiB held at most; batch jobs (1,000 files) never pay for the pickling


class OutcomeLog:
    """Append-only, iterable in order (more than once), `len()` without reading back."""

    def __init__(self, spool_dir: Path, spill_at: int | None = None):
        self._dir = spool_dir
        self._spill_at = spill_at or SPILL_AT
        self._buffer: list[Outcome] = []
        self._file = None
        self._chunks: list[int | list[Outcome]] = []  # file offsets, or buffers kept in memory
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._count += 1
        if len(self._buffer) >= self._spill_at:
            self._spill()

    def __iter__(self) -> Iterator[Outcome]:
        for chunk in self._chunks:
            if isinstance(chunk, list):
                yield from chunk
            else:
                yield from self._read(chunk)
        yield from list(self._buffer)

    def in_memory(self) -> int:
        """How many outcomes are held in memory right now (the rest are on disk)."""
        return len(self._buffer) + sum(len(c) for c in self._chunks if isinstance(c, list))

    def close(self) -> None:
        self._buffer, self._chunks = [], []
        if self._file is not None:
            self._file.close()
            self._file = None

    def _spill(self) -> None:
        chunk, self._buffer = self._buffer, []
        try:
            data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a connector's token that cannot be pickled: keep this chunk as it is
            self._chunks.append(chunk)
            return
        try:
            if self._file is None:
                self._dir.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self._dir)  # O_TMPFILE: nothing left after a crash
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(len(data).to_bytes(8, "little") + data)
        except OSError:  # no room on the state disk: memory it is, for this chunk
            self._chunks.append(chunk)
            return
        self._chunks.append(offset)

    def _read(self, offset: int) -> list[Outcome]:
        self._file.flush()
        self._file.seek(offset)
        size = int.from_bytes(self._file.read(8), "little")
        return pickle.loads(self._file.read(size))
