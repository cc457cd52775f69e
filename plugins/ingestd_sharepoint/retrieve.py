"""The bytes of the version of an item that its document will describe, whatever
happened to the item between the listing and the download.

- The bytes agree with the listing: done.
- They do not, or the download host says they are another version: the item is read
  again. Deleted: `Gone` (a tombstone or a skip, never a failure). A newer version: the
  bytes are taken as that version, with its own eTag, when they are its bytes; else that
  version is downloaded (at most `MAX_CHASES` newer versions per run).
- The listing stands but the bytes differ: downloaded once more. The listed bytes this
  time: the first body was damaged on the way. Other bytes again: damaged on the way
  (`integrity`, retried next run). The same bytes twice: SharePoint serves them so (it
  rewrites properties inside Office files), returned as `served` for the caller to
  record or refuse.

Runs on a download thread: it reads no state, only Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import unlink_quietly

from .download import Fetched, Source, fetch
from .items import Item
from .verify import ServedDiffers, mismatch, newer_than_listed

MAX_CHASES = 2


@dataclass
class Got:
    fetched: Fetched
    item: Item  # the version the bytes are: the listed one, or a newer one
    served: ServedDiffers | None = None


@dataclass
class Gone:
    """Deleted at the source before its bytes could be had."""


@dataclass
class Job:
    """What `retrieve` needs besides the item: where its bytes are, where they go, how
    to read it again (None when deleted)."""

    http: object
    source: Callable[[Item], Source]
    dest: Callable[[str], Path]  # a workspace file for a name suffix
    limit: int | None
    reread: Callable[[str], Item | None]
    progress: object = None  # the job's progress seam, told the bytes downloaded


def retrieve(job: Job, item: Item) -> Got | Gone:
    current = item
    for _ in range(MAX_CHASES + 1):
        try:
            got = fetch(job.http, job.source(current), job.dest(""), job.limit, job.progress)
        except ConnectorError as exc:
            if exc.code == Code.NOT_FOUND and job.reread(current.id) is None:
                return Gone()
            raise
        problem = mismatch(got, current)
        if problem is None and not newer_than_listed(current.etag, got.etag):
            return Got(got, current)
        fresh = _reread(job, current, got)
        if fresh is None:
            return Gone()
        if fresh.etag != current.etag:  # edited since the listing
            current = current.with_content_of(fresh)
            if mismatch(got, current) is None:
                return Got(got, current)
            unlink_quietly(got.path)
            continue
        if problem is None:  # the listing stands; the tags only looked like another version
            return Got(got, current)
        return _second_opinion(job, got, current, problem)
    raise ConnectorError(Code.TRANSIENT, f"item {item.id} changed {MAX_CHASES + 1} times while it was being "
                         "downloaded; the next run tries again", retryable=True)


def _reread(job: Job, item: Item, got: Fetched) -> Item | None:
    try:
        fresh = job.reread(item.id)
    except BaseException:
        unlink_quietly(got.path)
        raise
    if fresh is None:
        unlink_quietly(got.path)
    return fresh


def _second_opinion(job: Job, first: Fetched, item: Item, problem: str) -> Got:
    """Bytes that differ from an unchanged listing: served so, or damaged on the way?"""
    try:
        second = fetch(job.http, job.source(item), job.dest(".again"), job.limit, job.progress)
    except BaseException:
        unlink_quietly(first.path)
        raise
    if mismatch(second, item) is None and not newer_than_listed(item.etag, second.etag):
        unlink_quietly(first.path)
        return Got(second, item)
    unlink_quietly(second.path)
    if second.sha256 != first.sha256 or newer_than_listed(item.etag, second.etag):
        unlink_quietly(first.path)
        raise ConnectorError(Code.INTEGRITY, f"{problem}; a second download gave other bytes again (damaged on "
                             "the way, or changing): the next run tries again", request_id=first.request_id,
                             retryable=True)
    served = ServedDiffers(item.size, item.qxh, first.size, first.qxh, first.sha256, problem)
    return Got(first, item, served)
