"""One SharePoint job, from the delta link to the events core ingests, and back.

`events()` reads the delta (all pages, into the job's scratch tables), fills in what the
delta leaves out (retried items, unknown parent folders, files under a renamed folder),
plans every file, refuses a run that would delete too much, then yields deletions,
re-pointed renames and downloads (`concurrency` at a time, in plan order). `finish()`
records what became durable and, only for a run that read the whole delta and did not
fail, the new delta link.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Deleted, Failed, JobContext, Outcome, Staged
from ingestd.plugin.kit import display, safe_join

from . import delta, download, plan
from .delta import DeltaReader, ResyncRequired, seg
from .items import FILE, UNKNOWN, Item
from .parallel import InOrder
from .state import State

JOB_FATAL = {Code.AUTH, Code.THROTTLED, Code.CONFIG}  # no point trying the next file
MAX_PARENT_FETCHES = 1000


@dataclass
class Token:
    """What finish needs to record an event's outcome."""

    action: str
    item_id: str
    item: Item | None  # the item as it is now; None when gone


class Sync:
    def __init__(self, options, ctx: JobContext, http, state: State, target, *, graph_url: str):
        self.ctx = ctx
        self.opts = options
        self.http = http
        self.state = state
        self.target = target
        self.graph_url = graph_url
        self.root = f"{graph_url}/v1.0"
        self.log = ctx.log
        self.full = False
        self.complete = False
        self.delta_link: str | None = None
        self.done = threading.Event()  # set once finish has saved (or given up on) the state
        self.scope = plan.Scope(self.opts.folder, self.opts, self.opts.on_delete)

    # -- staging ----------------------------------------------------------------------

    def events(self):
        start, self.full, reason = self._start()
        self.log.info("sharepoint delta", mode="full" if self.full else "incremental", reason=reason,
                      site=self.target.site_url, library=self.target.drive_name)
        self._collect(start)
        if not self.full:
            self._fetch_retries()
        base, tree, moved = self._tree()
        if self.opts.folder and not tree.has_folder(self.opts.folder):
            raise ConnectorError(Code.NOT_FOUND, f"folder {self.opts.folder!r} not found in library "
                                 f"{self.target.drive_name!r} of {self.target.site_url}")
        leftovers = self._under_moved(base, tree, moved)
        self._plan(tree, leftovers)
        self._check_deletes()
        yield from self._refusals()
        yield from self._deletes()
        yield from self._repoints()
        yield from self._downloads()
        self.complete = True

    def _start(self) -> tuple[str, bool, str]:
        fresh = f"{self.root}/drives/{seg(self.target.drive_id)}/root/delta"
        link = self.state.meta("delta_link")
        if link is None:
            return fresh, True, "first sync"
        if self.state.meta("drive_id") != self.target.drive_id:
            return fresh, True, "library changed"
        if self.state.meta("scope") != json.dumps(self.opts.scope_key(), sort_keys=True):
            return fresh, True, "site, folder, filters or max_file_size changed"
        return link, False, "delta link"

    def _collect(self, start: str) -> None:
        try:
            self._read_delta(start)
        except ConnectorError as exc:
            if exc.code == Code.NOT_FOUND:  # the library went away: look it up again next run
                self.state.pending_meta["target"] = None
                exc.message = f"library {self.target.drive_name!r} of {self.target.site_url} is gone: {exc.message}"
            raise

    def _read_delta(self, start: str) -> None:
        for attempt in (1, 2):
            reader = DeltaReader(self.http, start, self.graph_url)
            try:
                for page in reader.pages():
                    self.state.see(Item.from_graph(raw) for raw in page if isinstance(raw, dict) and raw.get("id"))
                self.delta_link = reader.delta_link
                return
            except ResyncRequired as gone:
                if attempt == 2:
                    raise ConnectorError(Code.TRANSIENT, "Graph asked for a resync twice in one run",
                                         retryable=True) from None
                self.log.warning("sharepoint delta link expired; enumerating the library again",
                                 code=gone.code)
                self.state.forget_seen()
                start = gone.location or f"{self.root}/drives/{seg(self.target.drive_id)}/root/delta"
                self.full = True

    def _fetch_retries(self) -> None:
        """Items that failed last time: the delta link has moved past them."""
        for item_id in self.state.retry_ids():
            if self.state.seen(item_id) is None:
                self.state.see([self._fetch_item(item_id)])

    def _fetch_item(self, item_id: str) -> Item:
        raw = delta.item(self.http, self.root, self.target.drive_id, item_id)
        return Item.from_graph(raw) if raw else Item(id=item_id, kind=UNKNOWN, deleted=True)

    def _tree(self) -> tuple[plan.Tree, plan.Tree, set[str]]:
        """The folder tree before and after this run, and the folders whose path changed."""
        base = plan.Tree() if self.full else plan.old_tree(self.state.containers())
        tree, moved = plan.overlay(base, self.state.seen_containers(), self._old_kind)
        self._fill_parents(tree)
        return base, tree, (set() if self.full else moved)

    def _old_kind(self, item_id: str) -> str | None:
        row = self.state.row(item_id)
        return row["kind"] if row else None

    def _fill_parents(self, tree: plan.Tree) -> None:
        """Fetch folders the delta names as parents but never described (rare: Graph
        sends an item's ancestors unless asked not to)."""
        tried: set[str] = set()
        while len(tried) < MAX_PARENT_FETCHES:
            missing = {tree.missing_parent(i.parent) for i in self.state.seen_live()
                       if tree.folder_path(i.parent) is None} - tried - {None}
            if not missing:
                return
            for parent_id in missing:
                tried.add(parent_id)
                found = self._fetch_item(parent_id)
                if not found.deleted and found.in_tree:
                    self.state.see([found])
                    tree.put(found)

    def _under_moved(self, base: plan.Tree, tree: plan.Tree, moved: set[str]) -> list:
        """Tracked files below a renamed, moved or deleted folder: delta does not list
        them. Those still in scope are re-read from their folder's listing (their web URL
        changed); the rest are returned for planning as they are."""
        if not moved:
            return []
        below = base.subtree(moved)
        leftovers, folders = [], set()
        for row in self.state.files_under(below):
            path = tree.path_of(row["parent"], row["name"])
            if path is not None and self.scope.wants(path):
                folders.add(row["parent"])
            else:
                leftovers.append((row, path))
        for folder_id in sorted(folders):
            listed = [Item.from_graph(raw) for raw in delta.children(self.http, self.root, self.target.drive_id,
                                                                    folder_id, self.graph_url)]
            self.state.see(i for i in listed if i.is_file)
        return leftovers

    def _plan(self, tree: plan.Tree, leftovers: list) -> None:
        decisions: list[tuple[str, str, str | None]] = []
        refused: list[tuple[str, str]] = []  # (item id, the name that cannot be a path component)

        def add(item_id, new, old, path):
            action = plan.decide(self.scope, new, old, path)
            if action:
                decisions.append((item_id, action, path))
            if len(decisions) >= 500:
                self.state.plan(decisions)
                self.state.refuse(refused)
                decisions.clear()
                refused.clear()

        for item in self.state.seen_files():
            old = self.state.row(item.id)
            if item.deleted:
                if old is None:
                    decisions.append((item.id, "drop", None))  # settles a retry of a never-seen file
                elif old["kind"] == FILE:
                    add(item.id, None, old, None)
            elif item.is_file:
                path = tree.path_of(item.parent, item.name)
                rel = self.scope.relpath(path)
                if rel is not None and not self.opts.wanted(rel):
                    self.ctx.note_filtered()  # in the folder, left out by include/exclude: counted
                bad = tree.bad_name(item.parent, item.name)
                if bad is not None:
                    base = tree.folder_path(item.parent)
                    if base is not None and self.scope.wants(f"{base}/{item.name or ''}".lstrip("/")):
                        refused.append((item.id, bad))
                    path = None  # out of scope: never stored under a path that lies
                add(item.id, item, old, path)
        for row, path in leftovers:
            add(row["id"], plan.file_item(row) if path is not None else None, row, path)
        if self.full:
            for row in self.state.unseen_files():
                add(row["id"], None, row, None)
        self.state.plan(decisions)
        self.state.refuse(refused)

    def _check_deletes(self) -> None:
        deletes, live = self.state.count("delete"), self.state.live_count()
        limit = self.opts.max_delete_fraction
        if deletes and deletes > limit * live:
            raise ConnectorError(
                Code.DELETE_LIMIT,
                f"this run would delete {deletes} of {live} documents ({deletes / live:.0%}), more than "
                f"max_delete_fraction {limit}; if that is intended, raise max_delete_fraction for this source "
                "(or set on_delete = \"ignore\") and run it again",
            )
        self.log.info("sharepoint plan", downloads=self.state.count("download"),
                      renames=self.state.count("repoint"), deletes=deletes, documents=live)

    # -- events -----------------------------------------------------------------------

    def _refusals(self):
        for item_id, bad in self.state.refused():
            yield Failed(self._origin(self.state.seen(item_id)), Code.INVALID_NAME,
                         f"item {item_id}: the name \"{display(bad)}\" on its path cannot be a path component "
                         "(SharePoint allows no empty name, '.', '..' or '/'); not ingested", skip=True)

    def _deletes(self):
        for item_id, _ in self.state.planned("delete"):
            if self.ctx.stop.is_set():
                return
            old = self.state.row(item_id)
            now = self.state.seen(item_id)
            live = now if now is not None and not now.deleted else None
            yield Deleted(origin_uri=old["doc_origin"], identity=item_id, token=Token("delete", item_id, live))

    def _repoints(self):
        for item_id, path in self.state.planned("repoint"):
            if self.ctx.stop.is_set():
                return
            item, old = self.state.seen(item_id), self.state.row(item_id)
            yield Staged(
                origin_uri=self._origin(item), path=None, name=item.name or item_id, identity=item_id,
                owned=True, sha256=old["doc_sha256"], size=old["size"], source_modified_at=item.modified,
                metadata=self._metadata(item, path), token=Token("repoint", item_id, item),
            )

    def _downloads(self):
        """Download `concurrency` files at a time. The threads share the source's
        session, token and tenant gate (a 429 on one download holds back them all), but
        stop on an event of their own, so that a job-fatal error in one calls off the rest.
        Only this thread reads the state database."""
        halt = threading.Event()
        http = self.http.twin(halt)
        pool = InOrder(lambda task: self._download(http, *task), self.opts.concurrency, stop=self.ctx.stop,
                       halt=halt)
        yield from pool.run(self._planned_downloads())

    def _planned_downloads(self):
        for item_id, path in self.state.planned("download"):
            if self.ctx.stop.is_set():
                return
            yield self.state.seen(item_id), path

    def _download(self, http, item: Item, path: str | None):
        """One file into the workspace, as the event for it (runs on a download thread)."""
        origin, token = self._origin(item), Token("download", item.id, item)
        limit = self.opts.max_file_size
        if limit is not None and item.size is not None and item.size > limit:
            return Failed(origin, Code.TOO_LARGE, f"{item.size} bytes is over max_file_size {limit}",
                          skip=True, token=token)
        dest = safe_join(self.ctx.workspace, f"{item.id}.download")
        url = f"{self.root}/drives/{seg(self.target.drive_id)}/items/{seg(item.id)}/content"
        try:
            got = download.fetch(http, url, item, dest, limit)
        except ConnectorError as exc:
            if exc.code in JOB_FATAL:
                raise
            return Failed(origin, exc.code, exc.message, skip=exc.code == Code.TOO_LARGE,
                          request_id=exc.request_id, token=token)
        if got.resumed:
            self.log.info("sharepoint download resumed", item_id=item.id, resumes=got.resumed)
        return Staged(
            origin_uri=origin, path=dest, name=item.name or item.id, identity=item.id,
            source_modified_at=item.modified, metadata=self._metadata(item, path), owned=True,
            sha256=got.sha256, size=got.size, max_size=limit, token=token,
        )

    def _origin(self, item: Item) -> str:
        return item.web_url or f"{self.target.drive_url or self.target.site_url}#item={item.id}"

    def _metadata(self, item: Item, path: str | None) -> dict:
        values = {
            "item_id": item.id, "drive_id": self.target.drive_id, "site_id": self.target.site_id,
            "library": self.target.drive_name, "path": display(path) if path else None, "etag": item.etag,
            "ctag": item.ctag, "quick_xor_hash": item.qxh, "last_modified_by": item.modified_by,
            "content_type": item.mime, "web_url": item.web_url,
        }
        return {k: v for k, v in values.items() if v is not None}

    # -- after the commit -------------------------------------------------------------

    def finish(self, outcomes: list[Outcome], status: str) -> None:
        advance = self.complete and status != "failed" and self.delta_link is not None
        with self.state.transaction():
            for out in outcomes:
                if isinstance(out.event.token, Token):
                    self._record(out, out.event.token)
            self.state.set_meta(self.state.pending_meta)
            if advance:
                self.state.apply_quiet(full=self.full)
                self.state.set_meta({
                    "delta_link": self.delta_link, "drive_id": self.target.drive_id,
                    "scope": json.dumps(self.opts.scope_key(), sort_keys=True),
                })
        self.log.info("sharepoint state saved", delta_link_advanced=advance, status=status,
                      throttled_waits=self.http.throttled)

    def _record(self, out: Outcome, token: Token) -> None:
        ev, state = out.event, self.state
        if out.outcome == "failed":
            state.mark_retry(token.item_id, True)
            if token.action == "repoint":
                state.forget_content(token.item_id)
            return
        if isinstance(ev, Staged):
            state.put_item(token.item, doc=(ev.origin_uri, out.sha256))
        elif isinstance(ev, Deleted):
            if token.item is None:
                state.drop_item(token.item_id)
            else:
                state.put_item(token.item, doc=(None, None))
        elif isinstance(ev, Failed) and token.item is not None:  # a deliberate skip (too large)
            state.put_item(token.item)
        state.mark_retry(token.item_id, False)
