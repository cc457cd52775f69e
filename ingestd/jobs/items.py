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


def read_page(path: Path, offset: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
    """Up to `limit` outcomes from byte `offset` of an items file: (records, the offset after
    them, whether more complete lines follow). A cursor is a byte offset, so a page costs
    the same at the start of a million-line file as at its end. Only complete lines are
    read (a running job may be half-way through one); an offset that is not the start of
    a line starts at the next one, and one past the end reads nothing."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return [], 0, False
    with fh:
        offset = _line_start(fh, offset)
        records = []
        while len(records) < limit:
            line = fh.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line a crash left torn is skipped, not served
        more = fh.readline().endswith(b"\n")
    return records, offset, more


def _line_start(fh, offset: int) -> int:
    """`offset`, moved on to the start of a line (and back to the end of the file)."""
    offset = min(max(offset, 0), os.fstat(fh.fileno()).st_size)
    if offset:
        fh.seek(offset - 1)
        if fh.read(1) != b"\n":
            rest = fh.readline()
            offset += len(rest) if rest.endswith(b"\n") else 0
            fh.seek(offset)
    return offset


def record(outcome, change=None) -> dict[str, Any] | None:
    """The items-file record of one outcome (`plugin.connector.Outcome`, with the
    `store.catalogue.Change` it committed, if any); None for `unchanged`, which is
    counted, not listed. The cluster runner writes the same records to `job_items`."""
    if outcome.outcome == "unchanged":
        return None
    ev = outcome.event
    out = {"origin_uri": ev.origin_uri, "doc_id": outcome.doc_id, "outcome": outcome.outcome}
    if change is not None:
        out.update(sha256=change.blob.sha256, size=change.blob.size, mime=change.blob.mime)
    elif outcome.code is not None:
        out.update(error=outcome.code.value, message=outcome.message)
    return out
