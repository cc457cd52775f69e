"""Deciding what a run does with each file, from what it saw and what was there before.

No network here: the connector fetches, this module only compares. Each file gets one
action, stored in the job's scratch table:

- `download`: new in scope, or its content changed (or was never verified).
- `repoint`: same content, but renamed, moved or otherwise re-described (its columns or
  permissions changed): the document gets the new origin and metadata without the bytes
  being fetched again. Also a file
  back in scope (or back from the recycle bin) unchanged: its tombstoned document is
  restored from the bytes the store still holds.
- `delete`: its document must be tombstoned (gone, or moved out of scope).
- `forget`: out of scope with `on_delete = "ignore"`: the document stays, untracked.
- `keep`: nothing for the store; only the tracked fields are refreshed.
- `drop`: gone and never delivered (or `on_delete = "ignore"`): stop tracking it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .items import FILE, FOLDER, OTHER, ROOT, Item

MAX_DEPTH = 500


class Tree:
    """The drive's folders after this run: id → (parent id, name, kind).

    Packages (OneNote notebooks) are in the tree too, so their contents are known to be
    inside one: such paths resolve to None and the files are skipped, not hunted for.
    """

    def __init__(self, nodes: dict[str, tuple[str | None, str | None, str]] | None = None):
        self.nodes = dict(nodes or {})
        self._paths: dict[str, str | None] = {}

    def copy(self) -> "Tree":
        return Tree(self.nodes)

    def put(self, item: Item) -> None:
        self.nodes[item.id] = (item.parent, item.name, item.kind)
        self._paths.clear()

    def remove(self, item_id: str) -> None:
        if self.nodes.pop(item_id, None) is not None:
            self._paths.clear()

    def folder_path(self, folder_id: str | None) -> str | None:
        """'' for the root, 'A/B' for a folder, None when the chain does not reach the root."""
        if folder_id is None:
            return None
        if folder_id in self._paths:
            return self._paths[folder_id]
        chain: list[tuple[str, str]] = []
        current, base = folder_id, None
        for _ in range(MAX_DEPTH):  # a cycle or absurd depth resolves to None
            if current in self._paths:
                base = self._paths[current]
                break
            node = self.nodes.get(current)
            if node is None:
                break
            parent, name, kind = node
            if kind == ROOT:
                base = self._paths[current] = ""
                break
            if kind == OTHER:
                break
            chain.append((current, name or ""))
            current = parent
        for node_id, name in reversed(chain):
            base = None if base is None else (f"{base}/{name}" if base else name)
            self._paths[node_id] = base
        self._paths.setdefault(folder_id, base)
        return self._paths[folder_id]

    def path_of(self, parent: str | None, name: str | None) -> str | None:
        base = self.folder_path(parent)
        if base is None or not name:
            return None
        return f"{base}/{name}" if base else name

    def missing_parent(self, parent: str | None) -> str | None:
        """The first ancestor id the tree does not know, walking up from `parent`."""
        current = parent
        for _ in range(MAX_DEPTH):
            if current is None:
                return None
            node = self.nodes.get(current)
            if node is None:
                return current
            if node[2] in (ROOT, OTHER):
                return None
            current = node[0]
        return None

    def bad_name(self, parent: str | None, name: str | None) -> str | None:
        """The first of `name` and the names of the folders above it that cannot be one
        component of a path (see `usable_name`), or None when all can."""
        if not usable_name(name):
            return name or ""
        current = parent
        for _ in range(MAX_DEPTH):
            node = self.nodes.get(current)
            if node is None or node[2] in (ROOT, OTHER):
                return None
            if not usable_name(node[1]):
                return node[1] or ""
            current = node[0]
        return None

    def has_folder(self, path: str) -> bool:
        wanted = path.casefold()
        return any(kind == FOLDER and (self.folder_path(i) or "").casefold() == wanted
                   for i, (_, _, kind) in self.nodes.items())

    def subtree(self, roots: set[str]) -> set[str]:
        """`roots` and every folder below them."""
        children = defaultdict(list)
        for node_id, (parent, _, _) in self.nodes.items():
            children[parent].append(node_id)
        out, stack = set(), list(roots)
        while stack:
            current = stack.pop()
            if current in out:
                continue
            out.add(current)
            stack.extend(children.get(current, ()))
        return out


def usable_name(name: str | None) -> bool:
    """SharePoint names are never empty, `.` or `..`, and never hold `/`; a name that does
    comes from a broken or hostile server, and the path built from it would lie (`a/b`
    posing as file `b` in folder `a`, `..` as the parent folder, `` as the folder itself)."""
    return bool(name) and name not in (".", "..") and "/" not in name


@dataclass(frozen=True)
class Scope:
    """Which library paths the source holds: under `folder`, matching the filters."""

    folder: str | None
    filters: object  # FilterOptions
    on_delete: str

    def relpath(self, path: str | None) -> str | None:
        """The path the include/exclude globs see, or None when outside the folder."""
        if path is None:
            return None
        if not self.folder:
            return path
        prefix = self.folder.casefold() + "/"
        return path[len(prefix):] if path.casefold().startswith(prefix) else None

    def wants(self, path: str | None) -> bool:
        rel = self.relpath(path)
        return rel is not None and self.filters.wanted(rel)


def same_content(old, new: Item) -> bool:
    """Whether `new` describes the bytes delivered for `old`.

    A cTag changes exactly when the content does, so where both carry one it decides,
    whatever the hashes say: quickXorHash folds bytes 160 apart onto the same bits, so
    an edit that swaps two 80-byte records 160 bytes apart keeps size and hash. Then
    sha256 (strong, where Graph gives it), then quickXorHash, then the eTag (which also
    changes on a rename: re-downloading then is merely wasteful). Delta on OneDrive for
    Business leaves cTag out, so a change seen only there rests on the hash.
    """
    if old["size"] != new.size:
        return False
    for field in ("ctag", "sha256", "qxh"):
        if old[field] and getattr(new, field):
            return old[field] == getattr(new, field)
    return bool(old["etag"]) and old["etag"] == new.etag


def stale(old, new: Item | None) -> bool:
    """Whether the sha256 tracked for `old` stops describing the item: its content
    changed (the run then downloads it, or, out of scope, must not restore those bytes)."""
    return bool(old is not None and new is not None and old["doc_sha256"] and not same_content(old, new))


# what a document's metadata is made of: a change in any of them re-points it (a new
# metadata version, or a permissions version when only `acl` changed), no bytes fetched
_DESCRIBED_BY = ("parent", "name", "etag", "web_url", "modified", "modified_by", "mime", "fields", "acl")


def decide(scope: Scope, new: Item | None, old, path: str | None) -> str | None:
    """The action for one file: `new` is None when the file is gone, `old` its tracked row."""
    delivered = old is not None and old["doc_origin"] is not None
    if new is None or not scope.wants(path):
        if delivered:
            if scope.on_delete == "tombstone":
                return "delete"
            return "drop" if new is None else "forget"
        if old is None:
            return None if new is None else "keep"
        return "drop" if new is None else "keep"
    if old is None or not old["doc_sha256"] or not same_content(old, new):
        return "download"
    if not delivered or any(old[f] != getattr(new, f) for f in _DESCRIBED_BY):
        return "repoint"  # not delivered: back in scope, or restored; the store holds its bytes
    return "keep"


def old_tree(containers) -> Tree:
    tree = Tree()
    for item in containers:
        tree.put(item)
    return tree


def overlay(base: Tree, seen_containers, old_kind) -> tuple[Tree, set[str]]:
    """The tree after this run's folder changes, and the folders renamed, moved or
    deleted (their tracked descendants may have new paths that delta does not report).

    `old_kind(id)` gives the tracked kind of an id, for deletions that carry no facet.
    """
    tree = base.copy()
    moved: set[str] = set()
    for item in seen_containers:
        known = base.nodes.get(item.id)
        if item.deleted:
            if known is not None or old_kind(item.id) in (FOLDER, ROOT, OTHER):
                tree.remove(item.id)
                moved.add(item.id)
            continue
        if known is not None and (known[0], known[1]) != (item.parent, item.name):
            moved.add(item.id)
        tree.put(item)
    return tree, moved


def file_item(row) -> Item:
    item = Item.from_row(row)
    item.kind = FILE
    return item
