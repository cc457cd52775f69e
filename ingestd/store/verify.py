"""`ingestd verify`: every blob against its name, every record against its blob.

Checks: the catalogue file passes SQLite's own consistency check; every file in the blob
store is named by the sha256 of its bytes (in the folder of its first two hex digits);
every version record names a blob that exists and has the size the record says. With
`repair`, bad blobs are moved to `blobs/quarantine/` (dedup can never hand them out
again) and the content records name is marked damaged; the mark shows on the document
and goes away by itself when the same bytes are stored again (re-drop or re-sync it).

It is written against two small interfaces, `BlobSide` and `RecordSide`, so that another
backend (object storage, a SQL server) can run the same checks by answering them: both
streams come sorted by content hash and are merged, so memory stays flat whatever the
size of the store.
"""

from __future__ import annotations

import errno
import heapq
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from ingestd.store.blobs import is_sha256

# source_state: cluster mode only (a source's sync-state snapshot missing, damaged or unreadable)
Problem = Literal["catalogue", "blob_corrupt", "blob_stray", "blob_missing", "record_size", "source_state"]


class Finding(BaseModel):
    problem: Problem
    detail: str
    sha256: str | None = None
    documents: list[str] = []  # doc ids with a version naming this content
    repair: str | None = None  # what --repair did about it


class Report(BaseModel):
    blobs: int = 0
    bytes: int = 0
    versions: int = 0
    unreferenced: int = 0  # sound blobs no version names: extracted texts, a job stopped before its commit
    findings: list[Finding] = []
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.findings


class BlobSide(Protocol):
    def files(self) -> Iterator[tuple[str, Path]]:
        """Every stored object as (name, location), sorted by name."""

    def measure(self, location: Path) -> tuple[str, int]:
        """(sha256, size) of an object's bytes."""

    def quarantine(self, name: str, location: Path) -> str:
        """Take an object out of service, keeping its bytes; returns where they went."""


class RecordSide(Protocol):
    def check_database(self) -> list[str]: ...

    def versions(self) -> Iterator[tuple[str, int, str, int, bool]]:
        """Every version as (sha256, size, doc_id, seq, is_current), sorted by sha256."""

    def mark_damaged(self, sha256: str, reason: str) -> None: ...


def verify(blobs: BlobSide, records: RecordSide, *, repair: bool = False) -> Report:
    report = Report(repaired=repair)
    for line in records.check_database():
        report.findings.append(Finding(problem="catalogue", detail=line))
    stream = heapq.merge(_blob_stream(blobs, report, repair), _version_stream(records, report), key=lambda x: x[0])
    for sha, group in groupby(stream, key=lambda x: x[0]):
        blob, versions = None, []
        for item in group:
            if item[1] == "blob":
                blob = item
            else:
                versions.append(item)
        finding = _judge(sha, blob, versions, report)
        if finding is not None:
            if repair:
                finding.repair = _repair(finding, blob, blobs, records)
            report.findings.append(finding)
    return report


def _blob_stream(blobs: BlobSide, report: Report, repair: bool):
    """(sha, 'blob', location, (real sha, size)) for well-named blobs, by name; strays
    (a name that is no hash, or in the wrong folder) are findings straight away."""
    for name, location in blobs.files():
        if not is_sha256(name) or location.parent.name != name[:2]:
            stray = Finding(problem="blob_stray", detail=f"{_short(location)}: not a blob's name or place")
            if repair:
                stray.repair = f"quarantined to {blobs.quarantine(name, location)}"
            report.findings.append(stray)
            continue
        try:
            real, size = blobs.measure(location)
        except OSError as exc:
            real, size = f"unreadable: {exc.strerror or exc}", -1
        report.blobs += 1
        report.bytes += max(size, 0)
        yield name, "blob", location, (real, size)


def _version_stream(records: RecordSide, report: Report):
    for sha, size, doc_id, seq, current in records.versions():
        report.versions += 1
        yield sha, "version", size, doc_id


def _judge(sha: str, blob, versions: list, report: Report) -> Finding | None:
    docs = sorted({v[3] for v in versions})
    if blob is None:
        return Finding(problem="blob_missing", sha256=sha, documents=docs,
                       detail=f"{len(versions)} version(s) name content the blob store does not hold")
    real, size = blob[3]
    if real != sha:
        return Finding(problem="blob_corrupt", sha256=sha, documents=docs,
                       detail=f"its bytes hash to {real}" if size >= 0 else real)
    if not versions:
        report.unreferenced += 1
        return None
    wrong = sorted({v[2] for v in versions if v[2] != size})
    if wrong:
        return Finding(problem="record_size", sha256=sha, documents=docs,
                       detail=f"the blob has {size} bytes; records say {', '.join(map(str, wrong))}")
    return None


def _repair(finding: Finding, blob, blobs: BlobSide, records: RecordSide) -> str:
    done = []
    if finding.problem == "blob_corrupt":
        done.append(f"quarantined to {blobs.quarantine(blob[0], blob[2])}")
    if finding.documents:
        records.mark_damaged(finding.sha256, f"{finding.problem}: {finding.detail}")
        done.append(f"{len(finding.documents)} document(s) marked damaged until the same bytes are stored again")
    return "; ".join(done) or "nothing to do"


def _short(location: Path) -> str:
    return "/".join(location.parts[-2:])


class FileBlobs:
    """`BlobSide` for the local blob store."""

    def __init__(self, store_blobs):
        self.b = store_blobs
        self.quarantine_dir = store_blobs.root.parent / "quarantine"

    def files(self):
        return self.b.files()

    def measure(self, location: Path) -> tuple[str, int]:
        return self.b.measure(location)

    def quarantine(self, name: str, location: Path) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / f"{stamp}-{name[:80]}"
        try:
            os.replace(location, target)  # same filesystem: the quarantine sits beside the blobs
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(location, target)
        return str(target)
