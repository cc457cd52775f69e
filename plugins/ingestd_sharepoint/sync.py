"""One library's part of a SharePoint job, from its delta link to the events core
ingests, and back (`run.Run` drives one of these per library).

`prepare()` reads the delta (all pages, into the job's scratch tables), and with
`columns` the list's delta too, fills in what the delta leaves out (retried items,
unknown parent folders, files under a renamed folder, what came back inside a folder
restored from the recycle bin), learns what changed in the permissions (`permissions`),
and plans every file. `emit()` yields deletions, re-pointed renames, restores, column and
permission changes (no bytes fetched) and downloads (`concurrency` at a time, in plan
order, see `fetcher`). `finish()` records what became durable and, only for a run that
read the whole delta and did not fail, the new delta link.

A retired library (held before, no longer configured) reads nothing: its live documents
are planned for tombstoning, its state kept for the day it comes back.
"""

from __future__ import annotations

import json
import threading

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Deleted, Failed, JobContext, Outcome, Staged
from ingestd.plugin.kit import display

from . import columns, delta, plan
from .access import Access
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
    def __init__(self, options, ctx: JobContext, http, state: State, target, *, graph_url: str,
                 retired: bool = False):
        self.ctx = ctx
        self.opts = options
        self.http = http
        self.state = state
        self.target = target
        self.retired = retired
        self.graph_url = graph_url
        self.root = f"{graph_url}/v1.0"
        self.log = ctx.log
        self.full = False
        self.delta_link: str | None = None
        self.fields_link: str | None = None
        self.tree = plan.Tree()
        self.scope = plan.Scope(self.opts.folder, self.opts, self.opts.on_delete)
        self.describe = Describe(target)
        self.access = (Access(state, http, self.root, target.drive_id, graph_url, options.permission_changes)
                       if options.permissions and not retired else None)
        self.fetcher = Fetcher(options, self.describe, self.root, target.drive_id, lambda: ctx.workspace, ctx.log,
                               ctx.progress)
        self.served_differs = 0  # downloads whose bytes differ from their listing, this job
        self.broken: ConnectorError | None = None  # the library could not be read: reported, others go on
        self.gone = False  # its drive answered 404

    @property
    def key(self) -> str:
        return self.target.drive_id

    # -- staging ----------------------------------------------------------------------

    def prepare(self) -> None:
        if self.retired:
            return self._plan_retired()
        start, self.full, reason = self._start()
        self.log.info("sharepoint delta", mode="full" if self.full else "incremental", reason=reason,
                      site=self.target.site_url, library=self.target.drive_name)
        self._collect(start)
        if self.opts.columns:
            self._collect_fields()
        if not self.full:
            self._fetch_retries()
        base, tree, moved = self._tree()
        self._restored(tree)
        self.tree = tree
        if self.opts.folder and not tree.has_folder(self.opts.folder):
            raise ConnectorError(Code.NOT_FOUND, f"folder {self.opts.folder!r} not found in library "
                                 f"{self.target.drive_name!r} of {self.target.site_url}")
        leftovers = self._under_moved(base, tree, moved)
        settled = {row["id"] for row, _ in leftovers}  # gone or out of scope with their folder
        if self.opts.columns:
            self.state.join_fields()
            self._fields_changed(settled)
        if self.access is not None:
            self._permissions(tree, settled)
        self._plan(tree, leftovers)
        self.log.info("sharepoint plan", library=self.target.drive_name, downloads=self.state.count("download"),
                      renames=self.state.count("repoint"), deletes=self.state.count("delete"),
                      documents=self.state.live_count(), permission_reads=self.access.requests if self.access else 0)

    def emit(self):
        if self.broken is not None:
            message = self.broken.message
            if not message.startswith("library "):
                message = f"library {self.target.drive_name!r} of {self.target.site_url}: {message}"
            yield Failed(self.target.drive_url or self.target.site_url, self.broken.code, message,
                         request_id=self.broken.request_id, token=Token("library", self.key, None))
            return
        yield from self._refusals()
        yield from self._deletes()
        yield from self._repoints()
        yield from self._downloads()

    def planned(self) -> int:
        """How many events `emit` will yield: this library's share of the job's total."""
        if self.broken is not None:
            return 1
        return self.state.refused_count() + sum(self.state.count(a) for a in ("delete", "repoint", "download"))

    def planned_bytes(self) -> int:
        return 0 if self.broken is not None else self.state.download_bytes()

    def deletes(self) -> tuple[int, int]:
        """(documents this run would tombstone, live documents before it)."""
        return self.state.count("delete"), self.state.live_count()

    def _plan_retired(self) -> None:
        """Every live document of a library no longer configured goes, as if moved out
        of scope; the items stay tracked (with the sha256 of what the store holds) so the
        library coming back restores them without downloading."""
        self.log.info("sharepoint library no longer configured; its documents are tombstoned",
                      site=self.target.site_url, library=self.target.drive_name, documents=self.state.live_count())
        decisions = [(row["id"], "delete" if self.opts.on_delete == "tombstone" else "forget", None, False)
                     for row in self.state.files() if row["doc_origin"] is not None]
        self.state.plan(decisions)

    def _start(self) -> tuple[str, bool, str]:
        fresh = self._fresh()
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
            if exc.code == Code.NOT_FOUND:  # the library went away: `Run` has it looked up again next run
                self.gone = True
                exc.message = f"library {self.target.drive_name!r} of {self.target.site_url} is gone: {exc.message}"
            raise

    def _fresh(self) -> str:
        return f"{self.root}/drives/{seg(self.target.drive_id)}/root/delta{columns.drive_delta_query(self.opts.columns)}"

    def _read_delta(self, start: str) -> None:
        prefer = self.access.prefer if self.access is not None else None
        for attempt in (1, 2):
            reader = DeltaReader(self.http, start, self.graph_url, headers=prefer)
            try:
                for page in reader.pages():
                    self.state.see(Item.from_graph(raw, sharing=prefer is not None) for raw in page
                                   if isinstance(raw, dict) and raw.get("id"))
                self.delta_link = reader.delta_link
                return
            except ResyncRequired as gone:
                if attempt == 2:
                    raise ConnectorError(Code.TRANSIENT, "Graph asked for a resync twice in one run",
                                         retryable=True) from None
                self.log.warning("sharepoint delta link expired; enumerating the library again",
                                 code=gone.code)
                self.state.forget_seen()
                start = (gone.location if not self.opts.columns else None) or self._fresh()
                self.full = True

    def _collect_fields(self) -> None:
        """The configured columns of every list item changed since the last run (all of
        them on a first run or after a change of `columns`)."""
        list_id = self.state.meta("list_id")
        if list_id is None:
            list_id = columns.list_id(self.http, self.root, self.target.drive_id)
            self.state.pending_meta["list_id"] = list_id
        fresh = columns.list_delta_url(self.root, self.target.site_id, list_id, self.opts.columns)
        link = self.state.meta("fields_link")
        start = link if link and not self.full else fresh
        reader = columns.ListReader(self.http, self.graph_url, self.opts.columns, self.log)
        for rows in reader.rows(start, fresh):
            self.state.see_fields(rows)
        self.fields_link = reader.delta_link

    def _fields_changed(self, settled: set[str]) -> None:
        """Files whose columns changed where the drive delta did not say (an edit that
        fell between the two reads): seen as tracked, with their new columns."""
        changed = []
        for row in self.state.fields_changed():
            if row["id"] not in settled:
                item = plan.file_item(row)
                item.fields = row["new_fields"]
                changed.append(item)
        self.state.see(changed)

    def _permissions(self, tree: plan.Tree, settled: set[str]) -> None:
        """Read what changed in the permissions, then give each file seen this run its
        effective permissions' digest; tracked files the delta did not list whose
        permissions changed (below a folder whose permissions did) are seen as tracked,
        with the new digest, so the plan re-points them."""
        access = self.access
        if access.mode == "delta":
            access.learn(self.state.seen_all(), full=self.full, relevant=lambda i: self._relevant(tree, i))
        else:
            for item_id in self._documents_in_scope(tree):
                access.read(item_id)
        self.state.set_seen_acl([(access.effective(tree, item), item.id) for item in self.state.seen_live()
                                 if item.is_file])
        if not access.changed:
            return
        below = tree.subtree({i for i in access.changed if i in tree.nodes})
        rows = list(self.state.files_under(below)) if below else []
        rows += [r for r in map(self.state.tracked_file, sorted(access.changed - below)) if r is not None]
        changed = []
        for row in rows:
            if row["id"] in settled or self.state.seen(row["id"]) is not None:
                continue
            item = plan.file_item(row)
            item.acl = access.effective(tree, item)
            if item.acl != row["acl"]:
                changed.append(item)
        self.state.see(changed)

    def _relevant(self, tree: plan.Tree, item: Item) -> bool:
        """Whether an item's permissions can reach a file in scope: it is in the folder
        the source syncs, or above it."""
        if not self.opts.folder or item.kind == "root":
            return True
        path = tree.folder_path(item.id) if item.in_tree else tree.path_of(item.parent, item.name)
        if path is None:
            return False
        folder, path = self.opts.folder.casefold(), path.casefold()
        return path == folder or path.startswith(folder + "/") or folder.startswith(path + "/")

    def _documents_in_scope(self, tree: plan.Tree) -> list[str]:
        """Files whose permissions "every_run" reads: every one in scope, as seen this
        run or tracked."""
        ids = {i.id for i in self.state.seen_live() if i.is_file and self.scope.wants(tree.path_of(i.parent, i.name))}
        ids |= {r["id"] for r in self.state.files() if r["doc_origin"] is not None
                and self.state.seen(r["id"]) is None and self.scope.wants(tree.path_of(r["parent"], r["name"]))}
        return sorted(ids)

    def _fetch_retries(self) -> None:
        """Items that failed last time: the delta link has moved past them."""
        for item_id in self.state.retry_ids():
            if self.state.seen(item_id) is None:
                self.state.see([self._fetch_item(item_id)])

    def _fetch_item(self, item_id: str) -> Item:
        raw = delta.item(self.http, self.root, self.target.drive_id, item_id, columns.drive_delta_query(self.opts.columns))
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
            elif self.retired:  # still there, in a library the source no longer holds
                live = plan.file_item(old)
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
                metadata=self.describe.metadata(item, path, recorded, self._permissions_of(item)),
                token=Token("repoint", item_id, item),
            )

    def _permissions_of(self, item: Item) -> dict | None:
        return self.access.snapshot(self.tree, item) if self.access is not None else None

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
            item = self.state.seen(item_id)
            yield Task(item, path, old["doc_origin"] if old else None, refusal, self._permissions_of(item))

    # -- after the commit -------------------------------------------------------------

    def finish(self, outcomes: list[Outcome], status: str, complete: bool) -> bool:
        """Record the outcomes; True when the run moved this library forward (its delta
        link, or for a retired library, its documents all tombstoned)."""
        done = complete and status != "failed" and self.broken is None
        advance = done and self.delta_link is not None and (self.fields_link is not None or not self.opts.columns)
        with self.state.transaction():
            for out in outcomes:
                if isinstance(out.event.token, Token):
                    self._record(out, out.event.token)
            self.state.set_meta(self.state.pending_meta)
            if advance or (done and self.retired):
                self.state.apply_quiet(full=self.full)
            if done and self.retired:  # named again one day: enumerated afresh, so its documents come back
                self.state.set_meta({"delta_link": None, "fields_link": None})
            if advance:
                self.state.set_meta({
                    "delta_link": self.delta_link, "drive_id": self.target.drive_id,
                    "scope": json.dumps(self.opts.scope_key(), sort_keys=True),
                    "fields_link": self.fields_link,
                })
        self.log.info("sharepoint state saved", library=self.target.drive_name, delta_link_advanced=advance,
                      status=status, throttled_waits=self.http.throttled, served_bytes_differ=self.served_differs)
        return advance or (done and self.retired)

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
