"""One planned download, as the event core ingests. Runs on a download thread: what it
needs from the state comes in its `Task`.

Bytes served other than listed, the same twice (`verify.ServedDiffers`), of an Office
file follow the source's `verify`: "record" stores them, both sizes and hashes in the
metadata; "strict" refuses them. Those of any other file are refused (no server rewrites
them: something on the way does). A refusal is retried next run; after
`STRICT_REFUSALS` runs in a row refusing the same bytes for the same listing, the item
is left alone until it changes: no endless retry in any mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ingestd.plugin import Deleted, Failed, Staged
from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import safe_join, unlink_quietly

from . import delta
from .delta import seg
from .describe import Describe
from .download import Source
from .items import Item
from .retrieve import Gone, Got, Job, retrieve
from .tokens import Token
from .verify import rewritten_when_served

JOB_FATAL = {Code.AUTH, Code.THROTTLED, Code.CONFIG}  # no point trying the next file
STRICT_REFUSALS = 3
LISTED_URL_TTL = 45 * 60.0  # a listed download URL is used this long; Graph's last about an hour


@dataclass(frozen=True)
class Task:
    item: Item
    path: str | None
    doc_origin: str | None  # the origin of the item's live document, if it has one
    refusal: tuple[str | None, str, int] | None = None  # earlier strict refusals: (eTag, served sha256, runs)
    permissions: dict | None = None  # its effective permissions' snapshot (`permissions = true`)


class Fetcher:
    def __init__(self, opts, describe: Describe, root: str, drive_id: str, workspace, log, progress=None):
        self.opts = opts
        self.describe = describe
        self.root = root
        self.drive_id = drive_id
        self.workspace = workspace  # callable: the job's workspace directory (made on first use)
        self.log = log
        self.progress = progress  # the job's progress seam: told the bytes each download moves

    def event(self, http, task: Task):
        item, limit = task.item, self.opts.max_file_size
        origin, token = self.describe.origin(item), Token("download", item.id, item)
        if limit is not None and item.size is not None and item.size > limit:
            return Failed(origin, Code.TOO_LARGE, f"{item.size} bytes is over max_file_size {limit}",
                          skip=True, token=token)
        try:
            result = retrieve(self._job(http, item), item)
        except ConnectorError as exc:
            if exc.code in JOB_FATAL:
                raise
            return Failed(origin, exc.code, exc.message, skip=exc.code == Code.TOO_LARGE,
                          request_id=exc.request_id, token=token)
        if isinstance(result, Gone):
            return self._gone(task, origin)
        if result.fetched.resumed:
            self.log.info("sharepoint download resumed", item_id=item.id, resumes=result.fetched.resumed)
        if result.served is not None:
            office = rewritten_when_served(item)
            self.log.warning("sharepoint served bytes differ from the listing", item_id=item.id, office=office,
                             listed_size=item.size, served_size=result.served.served_size, verify=self.opts.verify)
            if self.opts.verify == "strict" or not office:
                return self._refuse(task, result, origin, office)
        return self._staged(task, result)

    def _staged(self, task: Task, result: Got) -> Staged:
        item, got = result.item, result.fetched
        served = result.served.metadata() if result.served else None
        return Staged(
            origin_uri=self.describe.origin(item), path=got.path, name=item.name or item.id, identity=item.id,
            source_modified_at=item.modified, metadata=self.describe.metadata(item, task.path, served, task.permissions),
            owned=True, sha256=got.sha256, size=got.size, max_size=self.opts.max_file_size,
            token=Token("download", item.id, item, served=result.served),
        )

    def _gone(self, task: Task, origin: str):
        """Deleted between the listing and the download: a tombstone for a live
        document (as the next delta would have), else nothing to store: a skip."""
        item_id = task.item.id
        if task.doc_origin is not None and self.opts.on_delete == "tombstone":
            return Deleted(origin_uri=task.doc_origin, identity=item_id, token=Token("delete", item_id, None))
        return Failed(origin, Code.NOT_FOUND, "deleted at the source before it could be downloaded", skip=True,
                      token=Token("gone", item_id, None))

    def _refuse(self, task: Task, result: Got, origin: str, office: bool) -> Failed:
        item, got, served = result.item, result.fetched, result.served
        unlink_quietly(got.path)
        prior = task.refusal
        same = prior is not None and (prior[0], prior[1]) == (item.etag, served.served_sha256)
        runs = prior[2] + 1 if same else 1
        final = runs >= STRICT_REFUSALS
        tail = ("not downloaded again until the item changes" if final else
                f"refused {runs} of {STRICT_REFUSALS} runs before it is left alone until the item changes")
        why = ("SharePoint serves these bytes every time (it rewrites properties inside Office files): refused, "
               "as verify = \"strict\" asks" if office else
               "the same bytes twice, and not an Office file SharePoint rewrites: refused")
        message = f"{served.problem}; {why}; {tail}"
        return Failed(origin, Code.INTEGRITY, message, skip=final, request_id=got.request_id,
                      token=Token("download", item.id, item, served=served, refused=runs))

    # -- what retrieve needs ----------------------------------------------------------

    def _job(self, http, item: Item) -> Job:
        def dest(suffix: str) -> Path:
            return safe_join(self.workspace(), f"{item.id}{suffix}.download")

        return Job(http, self._source, dest, self.opts.max_file_size, lambda item_id: self._reread(http, item_id),
                   self.progress)

    def _source(self, item: Item) -> Source:
        content = f"{self.root}/drives/{seg(self.drive_id)}/items/{seg(item.id)}/content"
        fresh = item.listed_at is not None and time.monotonic() - item.listed_at < LISTED_URL_TTL
        return Source(content, item.download_url if fresh else None)

    def _reread(self, http, item_id: str) -> Item | None:
        raw = delta.item(http, self.root, self.drive_id, item_id)
        return Item.from_graph(raw) if raw else None
