"""The finished-jobs file: one line per finished job (id, status, finish time, the inode of its
manifest file, source), appended when the job's final manifest has been written.

Why: a daemon's start-up must index every job, and reading and validating 100,000 manifests
costs seconds. A finished manifest never changes again, so what the index needs of it can
be written once, next to it, and read back at start in one file.

The manifests stay the source of truth; this file is only trusted line by line, and only
where it agrees with the directory: a line counts when its job's manifest is on disk with
the very inode the line names (every manifest write is a temp file renamed over the old
one, so a manifest rewritten after its line was written has another inode). Whatever the
file lacks (a crash between the manifest's rename and the append, an append the disk
refused, a line torn by a crash) is read from the manifest itself, and the file is then
mended. So a crash at any instant leaves either a correct line or none that counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ingestd._lib.atomic import write_bytes
from ingestd.jobs.manifest import TERMINAL

NAME = ".finished-jobs"  # a dot name: not a manifest to anything that lists them
_HEADER = b"ingestd finished jobs 1\n"
_MARK = "f"


class Finished(NamedTuple):
    """One line: plain strings as read (the inode too: it is only ever compared)."""

    job_id: str
    status: str
    finished_at: str
    inode: str
    source: str


def line(entry: Finished) -> bytes | None:
    """The entry as one line, or None for one this format cannot hold (never seen: source
    names are plain, but a manifest is not made to promise it)."""
    if any("\t" in f or "\n" in f or not f for f in entry):
        return None
    return ("\t".join((_MARK, *entry)) + "\n").encode()


def _entries(lines: list[str]) -> tuple[dict[str, Finished], int]:
    """Entries by job id (a later line for an id wins) and how many lines did not count.
    Ids are not checked here: a line counts only for a manifest file of its id's name."""
    out: dict[str, Finished] = {}
    bad = 0
    make = Finished._make
    for text in lines:
        fields = text.split("\t")
        if len(fields) != 6 or fields[0] != _MARK or fields[2] not in TERMINAL or not fields[3] or not fields[5]:
            bad += 1
            continue
        out[fields[1]] = make(fields[1:])
    return out, bad


class FinishedFile:
    """The file itself: appended to by every process that finishes a job in this state
    dir (one `write` per line on an O_APPEND descriptor, so lines of two processes never
    interleave), read and, when it needs mending, rewritten whole at start."""

    def __init__(self, directory: Path):
        self.path = directory / NAME

    def append(self, entry: Finished) -> bool:
        """Add a line; False if the disk refused (the manifest then answers for the job)."""
        data = line(entry)
        if data is None:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                data = _HEADER + data
            elif os.pread(fd, 1, size - 1) != b"\n":  # a crash tore the last line: keep ours apart
                data = b"\n" + data
            return os.write(fd, data) == len(data)
        except OSError:
            return False
        finally:
            os.close(fd)

    def read(self) -> tuple[dict[str, Finished], int]:
        """The entries by job id, and how many lines did not count (torn, malformed, or
        all of them when the file is of an unknown format)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}, 0
        except OSError:
            return {}, 1
        lines = raw.decode("utf-8", "replace").split("\n")
        torn = 1 if lines.pop() else 0  # a last line without its newline: a crash mid-append
        if not lines or lines[0] + "\n" != _HEADER.decode():
            return {}, len(lines) + torn
        out, bad = _entries(lines[1:])
        return out, bad + torn

    def rewrite(self, entries) -> bool:
        """Replace the file with these entries (atomically); False if the disk refused."""
        body = b"".join(data for data in map(line, entries) if data is not None)
        try:
            write_bytes(self.path, _HEADER + body)
        except OSError:
            return False
        return True
