"""The in-memory index of every job (id, source, status) that answers listings."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator

from ingestd.jobs.manifest import TERMINAL


class JobIndex:
    """Every job's id, source and status, kept as sorted id lists: one of all jobs and one
    per (source, status).

    Why: a daemon that makes a job per drop accumulates millions of jobs over its life, and
    the API lists them under heavy polling. Holding a full Manifest per job (~2.6 KB) grows
    without bound, and sorting every job per request costs O(n) time and garbage each time.
    Here a job costs its id string plus two list slots (~100 bytes), and a listing walks the
    relevant lists from the newest end and stops after `limit` matches: O(limit + log n)
    whatever the number of jobs. Job ids sort by creation time, so new ids are appended.
    Not thread-safe by itself: JobStore holds its lock around every call.
    """

    def __init__(self):
        self._all: list[str] = []
        self._groups: dict[tuple[str, str], list[str]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def put(self, job_id: str, source: str, status: str) -> None:
        """Add a job, or move it to its new status."""
        old = self.status(job_id, source)
        if old == status:
            return
        if old is None:
            _insert(self._all, job_id)
        else:
            _remove(self._groups[source, old], job_id)
        _insert(self._groups.setdefault((source, status), []), job_id)

    def load(self, groups: dict[tuple[str, str], list[str]]) -> None:
        """Index many jobs at once, given as their ids per (source, status), into an empty
        index: a sort per list, O(n log n) (one insert at a time cost O(n) each when ids came
        out of order, as a directory listing or a file of finished jobs gives them)."""
        for key, ids in groups.items():
            self._groups[key] = sorted(ids)
        self._all = sorted(job_id for ids in groups.values() for job_id in ids)

    def drop_before(self, cutoff: str, keep: set[str]) -> list[str]:
        """Forget every job whose id sorts before `cutoff` (created earlier), except those
        in `keep`; returns the forgotten ids. One slice per list, however many go."""
        end = bisect.bisect_left(self._all, cutoff)
        gone = [job_id for job_id in self._all[:end] if job_id not in keep]
        if gone:
            for ids in (self._all, *self._groups.values()):
                stop = bisect.bisect_left(ids, cutoff)
                ids[:stop] = [job_id for job_id in ids[:stop] if job_id in keep]
        return gone

    def discard(self, job_id: str) -> None:
        """Forget a job (its file is gone): rare, so it may look through every group."""
        for ids in self._groups.values():
            _remove(ids, job_id)
        _remove(self._all, job_id)

    def status(self, job_id: str, source: str) -> str | None:
        for status in _ALL_STATUSES:
            if _contains(self._groups.get((source, status), ()), job_id):
                return status
        return None

    def newest(self, source: str | None = None, status: str | None = None,
               before: str | None = None) -> Iterator[str]:
        """Ids matching the filters, newest first, all older than `before` if given."""
        if source is None and status is None:
            lists = [self._all]
        else:
            lists = [ids for (s, st), ids in self._groups.items()
                     if (source is None or s == source) and (status is None or st == status)]
        walks = [_descending(ids, before) for ids in lists]
        return walks[0] if len(walks) == 1 else heapq.merge(*walks, reverse=True)


_ALL_STATUSES: tuple[str, ...] = ("queued", "running", *TERMINAL)


def _insert(ids: list[str], job_id: str) -> None:
    if not ids or ids[-1] < job_id:
        ids.append(job_id)  # the usual case: ids grow with time
    else:
        bisect.insort(ids, job_id)


def _remove(ids: list[str], job_id: str) -> None:
    i = bisect.bisect_left(ids, job_id)
    if i < len(ids) and ids[i] == job_id:
        del ids[i]


def _contains(ids, job_id: str) -> bool:
    i = bisect.bisect_left(ids, job_id)
    return i < len(ids) and ids[i] == job_id


def _descending(ids: list[str], before: str | None) -> Iterator[str]:
    end = bisect.bisect_left(ids, before) if before else len(ids)
    for i in range(end - 1, -1, -1):
        yield ids[i]
