"""Who may read each document (`permissions = true`): effective permissions as a snapshot
with a digest, kept in the document's metadata, so every change makes a version.

How changes are learnt (`permission_changes`):

- "delta" (the default): the drive delta is asked for hierarchical sharing and sharing
  changes (`Prefer: hierarchicalsharing, deltashowremovedasdeleted,
  deltatraversepermissiongaps, deltashowsharingchanges`, from Microsoft's delta and
  scan-guidance pages). Then only the roots of permission hierarchies (items with
  permissions of their own: the library root, folders and files whose inheritance was
  broken) carry a `shared` facet, and an item whose sharing changed comes with
  `@microsoft.graph.sharedChanged: "True"`. Only those roots' permissions are read
  (`GET .../items/{id}/permissions`: Graph cannot expand permissions in a listing), and
  a file's effective permissions are those of its nearest root: itself, or the folder
  it inherits from, however deep. A no-change run reads none.
- "every_run": every document's permissions are read every run (a request per file),
  for where those preferences are not honoured.

Sharing links are kept by type and scope, never by URL: Graph calls a link's `webUrl`
and `shareId` secrets (they grant access to whoever holds them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from ingestd.errors import Code, ConnectorError

from .delta import page_problem, same_origin, seg
from .http import where

PREFER = "hierarchicalsharing, deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges"
MAX_ENTRIES = 2000
MAX_TEXT = 512
_IDENTITIES = ("user", "group", "application", "device", "siteGroup", "siteUser")


def digest_of(entries: list[dict]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def entries_of(value: list) -> list[dict]:
    """Graph's permission objects as sorted, secret-free entries."""
    out = sorted((_entry(raw) for raw in value if isinstance(raw, dict)), key=lambda e: json.dumps(e, sort_keys=True))
    return out[:MAX_ENTRIES]


def _entry(raw: dict) -> dict:
    out: dict = {"roles": sorted(_text(r) for r in raw.get("roles") or [] if isinstance(r, str))}
    link = raw.get("link")
    if isinstance(link, dict):
        out["link"] = {k: (_text(link[k]) if isinstance(link[k], str) else bool(link[k]))
                       for k in ("type", "scope", "preventsDownload") if k in link}
        people = raw.get("grantedToIdentitiesV2") or raw.get("grantedToIdentities") or []
        out["granted_to"] = sorted((i for i in (identity(p) for p in people if isinstance(p, dict)) if i),
                                   key=lambda i: json.dumps(i, sort_keys=True))[:MAX_ENTRIES]
        if raw.get("hasPassword") is not None:
            out["has_password"] = bool(raw["hasPassword"])
    else:
        who = identity(raw.get("grantedToV2") or raw.get("grantedTo") or {})
        if who:
            out["granted_to"] = who
    invitation = raw.get("invitation")
    if isinstance(invitation, dict) and isinstance(invitation.get("email"), str):
        out["invitation"] = _text(invitation["email"])
    expires = raw.get("expirationDateTime")
    if isinstance(expires, str) and not expires.startswith("0001-"):  # MinValue: none set
        out["expires"] = _text(expires)
    return out


def identity(identity_set) -> dict | None:
    """The first identity of a (SharePoint) identity set: who a permission is granted to."""
    if not isinstance(identity_set, dict):
        return None
    for kind in _IDENTITIES:
        who = identity_set.get(kind)
        if isinstance(who, dict):
            out = {"type": kind}
            for key, name in (("id", "id"), ("displayName", "name"), ("email", "email"), ("loginName", "login")):
                if isinstance(who.get(key), (str, int)) and str(who[key]):
                    out[name] = _text(str(who[key]))
            return out
    return None


def _text(value: str) -> str:
    return value[:MAX_TEXT]


class Access:
    """One library's permissions during a job: what is known (the state's `acl`, by item
    id, overlaid by what this run read), and which hierarchy roots changed."""

    def __init__(self, state, http, root: str, drive_id: str, graph_url: str, mode: str):
        self.state = state
        self.http = http
        self.root = root
        self.drive_id = drive_id
        self.graph_url = graph_url
        self.mode = mode
        self.known: dict[str, str] = state.acl_digests()  # item id -> digest of its own entries
        self.changed: set[str] = set()
        self.requests = 0
        self._entries: dict[str, list] = {}  # snapshots read back for documents, by root

    @property
    def prefer(self) -> dict | None:
        return {"Prefer": PREFER} if self.mode == "delta" else None

    def learn(self, items: Iterable, *, full: bool, relevant) -> None:
        """From this run's delta (mode "delta"): read the permissions of roots that are
        new, changed, or (on a full enumeration) all of them; forget those that now
        inherit. `relevant(item)`: whether its permissions can reach a file in scope."""
        for item in items:
            if item.deleted:
                if item.id in self.known:
                    self.forget(item.id)
            elif item.shared is True:
                if (full or item.sharing_changed or item.id not in self.known) and relevant(item):
                    self.read(item.id)
            elif item.shared is False and item.id in self.known:
                self.forget(item.id)

    def read(self, item_id: str) -> None:
        url: str | None = f"{self.root}/drives/{seg(self.drive_id)}/items/{seg(item_id)}/permissions"
        value: list = []
        while url is not None:
            if not same_origin(url, self.graph_url):
                raise ConnectorError(Code.INTERNAL, f"Graph returned a link to {where(url)}, outside graph_url")
            self.requests += 1
            try:
                status, body, _ = self.http.get_json(url, accept=(404,), check=page_problem)
            except ConnectorError as exc:
                if exc.code == Code.PERMISSION:  # in place of the read-access hint: reading is not enough here
                    exc.message = (exc.message.split("; ")[0] + "; reading who may see an item (permissions = true) "
                                   "needs the application permission Sites.FullControl.All, or Sites.Selected with "
                                   "the fullcontrol role on the site")
                raise
            if status == 404:  # gone since the listing: the next delta says so
                return
            value += body["value"]
            url = body.get("@odata.nextLink")
        entries = entries_of(value)
        digest = digest_of(entries)
        self._entries.pop(item_id, None)
        self.state.stage_acl(item_id, digest, json.dumps(entries, ensure_ascii=False))
        if self.known.get(item_id) != digest:
            self.known[item_id] = digest
            self.changed.add(item_id)

    def forget(self, item_id: str) -> None:
        self.state.stage_acl(item_id, None, None)
        self.known.pop(item_id, None)
        self._entries.pop(item_id, None)
        self.changed.add(item_id)

    def root_of(self, tree, item) -> str | None:
        """The item whose permissions `item` has: itself, or its nearest ancestor with
        permissions of its own ("every_run": itself only)."""
        if item.id in self.known:
            return item.id
        if self.mode != "delta":
            return None
        current = item.parent
        for _ in range(512):
            if current is None:
                return None
            if current in self.known:
                return current
            node = tree.nodes.get(current)
            if node is None:
                return None
            current = node[0]
        return None

    def effective(self, tree, item) -> str | None:
        """The digest a file's permissions version carries: its root's entries, and
        where they come from (a file that stops inheriting changes, even with the same
        entries)."""
        root = self.root_of(tree, item)
        if root is None:
            return None
        source = "" if root == item.id else root
        return hashlib.sha256(f"{self.known[root]}:{source}".encode()).hexdigest()

    def snapshot(self, tree, item) -> dict | None:
        """What a document's metadata holds under `permissions`."""
        root = self.root_of(tree, item)
        if root is None:
            return None
        inherited = root != item.id
        if root not in self._entries:
            self._entries[root] = json.loads(self.state.acl_snapshot(root) or "[]")
        entries = self._entries[root]
        out = {"digest": self.effective(tree, item), "inherited": inherited, "entries": entries}
        if self.mode == "every_run":
            out.pop("inherited")  # Graph's listing for one file does not say reliably
        elif inherited:
            path = tree.folder_path(root)
            out["inherited_from"] = {"item_id": root, "path": path if path is not None else None}
        return out
