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
from collections.abc import Iterator
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


def _parse(raw: bytes) -> Finished | None:
    """A line's entry, or None for a line that does not count (torn, malformed). Ids are not
    checked here: a line counts only for a manifest file of its id's name."""
    fields = raw.decode("utf-8", "replace").split("\t")
    if len(fields) != 6 or fields[0] != _MARK or fields[2] not in TERMINAL or not fields[3] \
            or not fields[5].endswith("\n") or len(fields[5]) < 2:
        return None
    fields[5] = fields[5][:-1]
    return Finished._make(fields[1:])


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

    def entries(self) -> Iterator[Finished | None]:
        """Each line's entry in file order (a later line for a job wins), None for a line
        that does not count; nothing when the file is missing, and one None when it is
        unreadable or of an unknown format. Read a line at a time: a start holds no copy of
        the file, and each line's garbage is gone before the next (the survivors, the ids,
        stay packed instead of scattered through memory freed around them)."""
        try:
            with open(self.path, "rb") as f:
                if f.readline() != _HEADER:
                    yield None
                    return
                for raw in f:
                    yield _parse(raw)
        except FileNotFoundError:
            return
        except OSError:
            yield None

    def rewrite(self, entries) -> bool:
        """Replace the file with these entries (atomically); False if the disk refused."""
        body = b"".join(data for data in map(line, entries) if data is not None)  # ~85 bytes a job
        try:
            write_bytes(self.path, _HEADER + body)
        except OSError:
            return False
        return True
