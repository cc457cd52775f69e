"""One sync job: list the prefix, compare each page with the stored state, fetch what is
new or changed in parallel, then report what vanished.

Unchanged objects cost nothing but their line in the listing: no GET, no HEAD. Objects
to fetch wait either in the download window or on disk in the snapshot, never in a list
that grows with the bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Deleted, Event, Failed, JobContext

from .download import Fetcher
from .keys import is_folder_marker, is_utf8, object_name, origin_uri, plain_etag, relpath
from .objects import Listed, Skip
from .options import S3Options
from .pool import Pool
from .remote import translate
from .state import Snapshot

LIST_PAGE_SIZE = 1000  # the S3 maximum: fewest requests
# Storage classes a GET refuses until the object is restored. GLACIER_IR is readable;
# Intelligent-Tiering's archive tiers do not show in a listing (their GET is refused).
ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})
ARCHIVED_HINT = ("not fetched; restore it and copy it over itself into a readable storage class "
                 "(README: S3, archived objects), and the next run takes it")


@dataclass
class Tally:
    pages: int = 0
    listed: int = 0
    unchanged: int = 0
    fetched: int = 0
    deferred: int = 0
    filtered: int = 0
    folders: int = 0  # empty folder markers
    refused: int = 0
    refused_before: int = 0  # archived or nameless objects a previous job reported
    vanished: int = 0


class Sync:
    def __init__(self, client, options: S3Options, ctx: JobContext):
        self.client = client
        self.options = options
        self.ctx = ctx
        self.tally = Tally()
        self.planned_bytes = 0  # of the objects to fetch: the progress seam's total

    @property
    def where(self) -> str:
        return f"s3://{self.options.bucket}/{self.options.prefix}"

    def events(self) -> Iterator[Event]:
        """List, compare, fetch, then tombstone.

        When tombstones are possible (known objects, `on_delete = "tombstone"`), fetches
        are parked in the snapshot until the listing is complete and the delete valve has
        passed: a refused run then changes nothing at all. A first sync cannot delete
        anything, so there fetches overlap with listing.
        """
        progress = self.ctx.progress
        progress.phase("listing")
        with Snapshot(self.ctx.source_state, self.options.bucket) as snapshot:
            known = snapshot.known_count()
            guarded = known > 0 and self.options.on_delete == "tombstone"
            with Pool(self._fetcher(), self.options.concurrency, self.ctx.stop) as pool:
                for page in self._pages():
                    for item in self._plan(page, snapshot):
                        if isinstance(item, Failed):
                            yield item
                        elif guarded:
                            snapshot.park(item)
                        else:
                            yield from pool.fetch(item)
                    yield from pool.ready()
                    if self.ctx.stop.is_set():
                        return
                snapshot.forget_unlisted_skips()
                gone = snapshot.vanished()
                self._valve(gone, known)
                tombstones = 0 if self.options.on_delete == "ignore" else len(gone)
                progress.expect(items=self.tally.fetched + self.tally.refused + tombstones, bytes=self.planned_bytes)
                progress.phase("downloading")
                for item in snapshot.parked():
                    yield from pool.fetch(item)
                    if self.ctx.stop.is_set():
                        return
                yield from pool.drain()
            if self.ctx.stop.is_set():
                return
            yield from self._tombstones(gone)
        self.ctx.log.info("s3 sync compared", where=self.where, **asdict(self.tally))

    def _fetcher(self) -> Fetcher:
        return Fetcher(self.client, self.options.bucket, self.ctx.workspace, limit=self.options.max_object_size,
                       min_age=self.options.min_age_seconds, stop=self.ctx.stop, abort=threading.Event(),
                       progress=self.ctx.progress)

    def _pages(self) -> Iterator[list[dict]]:
        pages = iter(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.options.bucket, Prefix=self.options.prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}))
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                err = translate(exc, f"listing {self.where}")
                if err is None:
                    raise
                raise err from None
            self.tally.pages += 1
            yield page.get("Contents", [])  # an empty page has no Contents at all

    def _plan(self, page: list[dict], snapshot: Snapshot) -> Iterator[Failed | Listed]:
        """For each listed object: nothing (unchanged, filtered, ...), a refusal, or itself
        when it has to be fetched."""
        self.tally.listed += len(page)
        known, skipped = snapshot.observe([o["Key"] for o in page if is_utf8(o["Key"])])
        now = time.time()
        for item in page:
            obj = Listed(item["Key"], plain_etag(item.get("ETag")), int(item.get("Size", 0)),
                         item["LastModified"], item.get("StorageClass"))
            verdict = self._verdict(obj, known.get(obj.key), skipped.get(obj.key), now)
            if isinstance(verdict, Failed):
                self.tally.refused += 1
                yield verdict
            elif verdict:
                self.tally.fetched += 1
                self.planned_bytes += obj.size
                yield obj

    def _verdict(self, obj: Listed, previous, skipped: Skip | None, now: float) -> Failed | bool:
        """True to fetch, False to leave alone, or a Failed refusal."""
        uri = origin_uri(self.options.bucket, obj.key) if is_utf8(obj.key) else None
        if uri is None:
            return Failed(f"s3://{self.options.bucket}/", Code.INVALID_NAME, "key is not valid UTF-8", skip=True)
        if obj.size == 0 and is_folder_marker(obj.key):
            self.tally.folders += 1
            return False
        if not self.options.wanted(relpath(obj.key, self.options.prefix)):
            self.tally.filtered += 1
            self.ctx.note_filtered()
            return False
        if previous is not None and previous.same(obj.etag, obj.size, obj.token.modified):
            self.tally.unchanged += 1
            return False
        if skipped is not None and skipped.same(obj):
            self.tally.refused_before += 1
            return False
        if self.options.min_age_seconds and now - obj.modified.timestamp() < self.options.min_age_seconds:
            self.tally.deferred += 1
            return False
        return self._refusal(obj, uri) or True

    def _refusal(self, obj: Listed, uri: str) -> Failed | None:
        """Why `obj` is not fetched at all. Archived and nameless objects are remembered
        (the Skip token) and not reported again until they change; an object over the
        size limit is reported every run, since raising the limit is the operator's fix."""
        if obj.storage_class in ARCHIVED:
            return Failed(uri, Code.UNAVAILABLE, f"archived in {obj.storage_class}: {ARCHIVED_HINT}", skip=True,
                          token=obj.skip(Code.UNAVAILABLE.value))
        if object_name(obj.key) is None:
            return Failed(uri, Code.INVALID_NAME, "the key ends in '.' or '..' and names no file; not ingested",
                          skip=True, token=obj.skip(Code.INVALID_NAME.value))
        limit = self.options.max_object_size
        if limit is not None and obj.size > limit:
            return Failed(uri, Code.TOO_LARGE, f"{obj.size} bytes is over max_object_size {limit}", skip=True,
                          token=obj.key)
        return None

    def _valve(self, gone: list[str], known: int) -> None:
        """Refuse, before anything is fetched or tombstoned, a run that would tombstone
        more than `max_delete_fraction` of the known objects."""
        self.tally.vanished = len(gone)
        if not gone or self.options.on_delete == "ignore":
            return
        fraction = self.options.max_delete_fraction
        if len(gone) > fraction * known:
            raise ConnectorError(Code.DELETE_LIMIT, (
                f"{len(gone)} of {known} known objects are gone from {self.where} ({len(gone) / known:.0%}), "
                f"more than max_delete_fraction = {fraction}; nothing was fetched or tombstoned. Check 'bucket' "
                "and 'prefix'; if the deletions are real, raise max_delete_fraction for one run"))

    def _tombstones(self, gone: list[str]) -> Iterator[Event]:
        if gone and self.options.on_delete == "ignore":
            self.ctx.log.info("s3 objects vanished; on_delete = ignore", where=self.where, count=len(gone))
            return
        for key in gone:
            yield Deleted(origin_uri(self.options.bucket, key), token=key)
