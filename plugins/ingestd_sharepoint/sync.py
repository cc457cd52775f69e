"""One SharePoint job, from the delta link to the events core ingests, and back.

`events()` reads the delta (all pages, into the job's scratch tables), fills in what the
delta leaves out (retried items, unknown parent folders, files under a renamed folder,
what came back inside a folder restored from the recycle bin), plans every file, refuses
a run that would delete too much, then yields deletions, re-pointed renames (and
restores) and downloads (`concurrency` at a time, in plan order, see `fetcher`).
`finish()` records what became durable and, only for a run that read the whole delta
and did not fail, the new delta link.
"""

from __future__ import annotations

import json
import threading

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Deleted, Failed, JobContext, Outcome, Staged
from ingestd.plugin.kit import display

from . import delta, plan
from .delta import DeltaReader, ResyncRequired, seg
from .describe import Describe
from .fetcher import STRICT_REFUSALS, Fetcher, Task
from .items import FILE, FOLDER, UNKNOWN, Item
from .parallel import InOrder
from .state import State
from .tokens import Token
from .verify import rewritten_when_served

MAX_PARENT_FETCHES = 1000
MAX_RESTORED_LISTINGS = 10_000  # folder listings per run for subtrees back from the recycle bin


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
        self.describe = Describe(target)
        self.fetcher = Fetcher(options, self.describe, self.root, target.drive_id, lambda: ctx.workspace, ctx.log)
        self.served_differs = 0  # downloads whose bytes differ from their listing, this job

    # -- staging ----------------------------------------------------------------------

    def events(self):
        start, self.full, reason = self._start()
        self.log.info("sharepoint delta", mode="full" if self.full else "incremental", reason=reason,
                      site=self.target.site_url, library=self.target.drive_name)
        self._collect(start)
        if not self.full:
            self._fetch_retries()
        base, tree, moved = self._tree()
        self._restored(tree)
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

    def _restored(self, tree: plan.Tree) -> None:
        """Folders back from the recycle bin (ids deleted before): delta may report the
        folder alone, not what came back inside it, so their subtrees are listed."""
        if self.full:
            return
        todo = [i.id for i in self.state.seen_containers()
                if not i.deleted and i.kind == FOLDER and self.state.was_gone(i.id)]
        for listed in range(MAX_RESTORED_LISTINGS):
            if not todo:
                return
            found = [Item.from_graph(raw) for raw in delta.children(self.http, self.root, self.target.drive_id,
                                                                   todo.pop(), self.graph_url)]
            self.state.see(found)
            for item in found:
                if item.in_tree:
                    tree.put(item)
                if item.kind == FOLDER:
                    todo.append(item.id)
        self.log.warning("sharepoint restored folders not all listed", listed=MAX_RESTORED_LISTINGS,
                         left=len(todo))

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
        decisions: list[tuple[str, str, str | None, bool]] = []
        refused: list[tuple[str, str]] = []  # (item id, the name that cannot be a path component)

        def add(item_id, new, old, path):
            action = plan.decide(self.scope, new, old, path)
            if action == "download" and self._refused_for_good(item_id, new):
                action = "keep"
            if action:
                decisions.append((item_id, action, path, plan.stale(old, new)))
            if len(decisions) >= 500:
                self.state.plan(decisions)
                self.state.refuse(refused)
                decisions.clear()
                refused.clear()

        for item in self.state.seen_files():
            old = self.state.row(item.id)
            if item.deleted:
                if old is None:
                    decisions.append((item.id, "drop", None, False))  # settles a retry of a never-seen file
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

    def _refused_for_good(self, item_id: str, item: Item) -> bool:
        """Served bytes refused `STRICT_REFUSALS` runs in a row for this very listing (and
        still refused: strict, or not an Office file); asked for again once it changes."""
        served = self.state.served(item_id)
        if served is None or served["refused"] < STRICT_REFUSALS or served["etag"] != item.etag:
            return False
        return self.opts.verify == "strict" or not rewritten_when_served(item)

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
            yield Failed(self.describe.origin(self.state.seen(item_id)), Code.INVALID_NAME,
                         f"item {item_id}: the name \"{display(bad)}\" on its path cannot be a path component "
                         "(SharePoint allows no empty name, '.', '..' or '/'); not ingested", skip=True)

    def _deletes(self):
        for item_id, path in self.state.planned("delete"):
            if self.ctx.stop.is_set():
                return
            old = self.state.row(item_id)
            now = self.state.seen(item_id)
            if now is not None:
                live = None if now.deleted else now
            else:  # below a folder that moved: gone with it, or still there out of scope
                live = plan.file_item(old) if path is not None else None
            yield Deleted(origin_uri=old["doc_origin"], identity=item_id, token=Token("delete", item_id, live))

    def _repoints(self):
        for item_id, path in self.state.planned("repoint"):
            if self.ctx.stop.is_set():
                return
            item, old, served = self.state.seen(item_id), self.state.row(item_id), self.state.served(item_id)
            recorded = self._served_metadata(served) if served is not None and not served["refused"] else None
            yield Staged(
                origin_uri=self.describe.origin(item), path=None, name=item.name or item_id, identity=item_id,
                owned=True, sha256=old["doc_sha256"], size=old["size"], source_modified_at=item.modified,
                metadata=self.describe.metadata(item, path, recorded), token=Token("repoint", item_id, item),
            )

    @staticmethod
    def _served_metadata(row) -> dict:
        return {"listed_size": row["listed_size"], "listed_quick_xor_hash": row["listed_qxh"],
                "served_size": row["served_size"], "served_quick_xor_hash": row["served_qxh"]}

    def _downloads(self):
        """Download `concurrency` files at a time. The threads share the source's
        session, token and tenant gate (a 429 on one download holds back them all), but
        stop on an event of their own, so that a job-fatal error in one calls off the rest.
        Only this thread reads the state database."""
        halt = threading.Event()
        http = self.http.twin(halt)
        pool = InOrder(lambda task: self.fetcher.event(http, task), self.opts.concurrency, stop=self.ctx.stop,
                       halt=halt)
        yield from pool.run(self._planned_downloads())

    def _planned_downloads(self):
        for item_id, path in self.state.planned("download"):
            if self.ctx.stop.is_set():
                return
            old, served = self.state.row(item_id), self.state.served(item_id)
            refusal = (served["etag"], served["served_sha256"], served["refused"]) if served else None
            yield Task(self.state.seen(item_id), path, old["doc_origin"] if old else None, refusal)

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
                      throttled_waits=self.http.throttled, served_bytes_differ=self.served_differs)

    def _record(self, out: Outcome, token: Token) -> None:
        ev, state = out.event, self.state
        if token.served is not None:
            self.served_differs += 1
        if token.refused:
            state.set_served(token.item_id, token.item.etag, token.served, token.refused)
        if out.outcome == "failed":
            state.mark_retry(token.item_id, True)
            if token.action == "repoint":
                state.forget_content(token.item_id)
            return
        if isinstance(ev, Staged):
            state.put_item(token.item, doc=(ev.origin_uri, out.sha256))
            if token.action == "download":
                state.set_served(token.item_id, token.item.etag, token.served)
        elif isinstance(ev, Deleted):
            if token.item is None:
                state.bury(token.item_id)
            else:
                state.tombstoned(token.item, stale=state.stale(token.item_id))
        elif token.item is None:  # deleted before its download: nothing was stored
            state.bury(token.item_id)
        else:  # a deliberate skip (too large, refused for good)
            state.put_item(token.item)
        state.mark_retry(token.item_id, False)
