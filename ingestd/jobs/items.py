"""The per-item outcomes of a job: a JSON-lines file beside its manifest, so the manifest
stays small for a sync of a million objects."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ingestd._lib import redact


class ItemsWriter:
    """Appends per-item outcomes; `flush` makes them durable with the batch they belong to."""

    def __init__(self, path: Path):
        self._fh = open(path, "ab")

    def write(self, record: dict[str, Any]) -> None:
        # only the free text (`message`) is masked, and before encoding: an escaped secret
        # would not match, and a name, origin or outcome must never be rewritten
        line = json.dumps(redact.scrub(record), ensure_ascii=False, allow_nan=False, default=str,
                          separators=(",", ":"))
        self._fh.write(line.encode() + b"\n")

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
