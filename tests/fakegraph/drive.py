"""An in-memory SharePoint document library with a change log, shaped like Graph.

Items are kept by id with parent id and name, as SharePoint does. Each change appends a
snapshot of the item to the log; delta from a token replays the log after it, so an item
changed twice shows up twice (old state, then new: the client must let the last win).
Ancestors of changed items come first, as Graph sends them. Like OneDrive for Business,
delta leaves out `cTag` on changes and `name` on deletes, and never sends
`parentReference.path`; a plain item GET has both.

The library is also a list: every item is a list item (an integer id, `sharepointIds`),
with custom column values (`set_fields`), and a list-item delta of its own.

Permissions follow SharePoint's model: the root has permissions of its own (the site's
groups), every other item inherits from its parent until its inheritance is broken
(`break_inheritance`, or sharing it with someone or by a link, which breaks it first, as
SharePoint does); `reset_inheritance` makes it inherit again. A permission change is
logged as a sharing change of that item only: descendants that inherit are not listed
(Microsoft's delta docs, "Scanning permissions hierarchies").
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from .hashes import quick_xor_b64

USERS = {
    "megan": {"email": "megan@contoso.com", "id": "48d31887-5fad-4d73-a9f5-3c356e68a038", "displayName": "Megan Bowen"},
    "alex": {"email": "alex@contoso.com", "id": "0aa2d5d6-b4a1-4d4f-9cd8-5a7ad5c5d0e1", "displayName": "Alex Wilber"},
    "adele": {"email": "adele@contoso.com", "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd", "displayName": "Adele Vance"},
}


def new_item_id() -> str:
    """SharePoint driveItem ids look like 01 + 32 base32 characters."""
    return "01" + base64.b32encode(os.urandom(20)).decode()[:32]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Node:
    id: str
    name: str
    parent: str | None
    kind: str  # root | folder | file
    guid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    content: bytes = b""
    version: int = 1  # eTag counter: any change
    content_version: int = 1  # cTag counter: content changes only
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    modified_by: str = "megan"
    deleted: bool = False
    deleted_with: str | None = None  # the id whose deletion took this item to the recycle bin
    qxh_override: str | None = None  # report this quickXorHash instead of the true one
    served: bytes | None = None  # serve these bytes instead of the content, on every download
    rewrites: bool = False  # an Office file SharePoint serves with its properties rewritten
    list_item_id: int = 0  # the item's id in the library's list
    fields: dict = field(default_factory=dict)  # custom column values (empty ones left out)
    unique: bool = False  # has permissions of its own (else inherits from its parent)
    grants: list = field(default_factory=list)  # its own permissions (Graph `permission` objects), when unique
    _qxh: str | None = None

    def served_bytes(self) -> bytes:
        """What a download delivers. SharePoint writes library properties into Office
        files as it serves them (property demotion), so their bytes differ from the size
        and quickXorHash it lists (rclone #2036, #8558); each content version is
        rewritten the same way every time it is served."""
        if self.served is not None:
            return self.served
        if self.rewrites:
            return self.content + f"<docProps item='{self.guid}' version='{self.content_version}'/>".encode()
        return self.content

    def touch(self, content_changed: bool) -> None:
        self.version += 1
        if content_changed:
            self.content_version += 1
            self._qxh = None
        self.modified = max(datetime.now(timezone.utc), self.modified + timedelta(seconds=1))

    def quick_xor(self) -> str:
        if self.qxh_override:
            return self.qxh_override
        if self._qxh is None:
            self._qxh = quick_xor_b64(self.content)
        return self._qxh


class Drive:
    def __init__(self, site, name: str = "Documents", url_name: str = "Shared Documents",
                 drive_type: str = "documentLibrary"):
        self.site = site
        self.id = "b!" + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        self.name = name
        self.url_name = url_name
        self.drive_type = drive_type  # "business" for a OneDrive's personal site
        self.list_id = str(uuid.uuid4())
        self.lock = threading.RLock()
        self.nodes: dict[str, Node] = {}
        self.log: list[tuple[int, dict]] = []  # (seq, snapshot as delta shows it)
        self.list_log: list[tuple[int, str]] = []  # (seq, node id): list items changed, for the list's delta
        self.seq = 0
        self.next_list_item = 1
        self.oldest_valid = 0  # delta tokens older than this answer 410
        self.list_oldest_valid = 0  # the same for the list's delta
        self.report_inherited_from = False  # Microsoft: SharePoint does not return permission.inheritedFrom
        # Microsoft's delta remarks say OneDrive for Business leaves cTag out of changes;
        # SharePoint delta has been seen carrying it (microsoft-graph-docs #9205): a test
        # may switch it on before making changes
        self.delta_ctag = False
        self.grant_seq = 0
        root = Node(id=new_item_id(), name="root", parent=None, kind="root", unique=True)
        root.grants = [self._grant({"siteGroup": group}, roles) for group, roles in site_groups(site)]
        self.root_id = root.id
        self.nodes[root.id] = root

    # -- building and changing the library -------------------------------------------

    def add(self, path: str, content: bytes = b"", *, by: str = "megan", rewrites: bool = False) -> str:
        """Create a file (and any missing folders); returns its id. With `rewrites`, an
        Office file whose served bytes differ from its listing (see `Node.served_bytes`)."""
        parent = self.folder(path.rsplit("/", 1)[0] if "/" in path else "", create=True)
        with self.lock:
            node = Node(id=new_item_id(), name=path.rsplit("/", 1)[-1], parent=parent, kind="file",
                        content=content, modified_by=by, rewrites=rewrites, list_item_id=self._list_item_id())
            self.nodes[node.id] = node
            self._changed(node)
            return node.id

    def folder(self, path: str, create: bool = False) -> str:
        with self.lock:
            current = self.root_id
            for part in [p for p in path.split("/") if p]:
                found = self._child(current, part)
                if found is None:
                    if not create:
                        raise KeyError(path)
                    node = Node(id=new_item_id(), name=part, parent=current, kind="folder",
                                list_item_id=self._list_item_id())
                    self.nodes[node.id] = node
                    self._changed(node)
                    found = node.id
                current = found
            return current

    def edit(self, path: str, content: bytes, *, by: str = "alex") -> str:
        with self.lock:
            node = self.nodes[self.id_of(path)]
            node.content = content
            node.modified_by = by
            node.touch(content_changed=True)
            self._changed(node)
            return node.id

    def rename(self, path: str, new_name: str) -> str:
        with self.lock:
            node = self.nodes[self.id_of(path)]
            node.name = new_name
            node.touch(content_changed=False)
            self._changed(node)
            return node.id

    def move(self, path: str, new_folder: str) -> str:
        with self.lock:
            node = self.nodes[self.id_of(path)]
            node.parent = self.folder(new_folder, create=True)
            node.touch(content_changed=False)
            self._changed(node)
            return node.id

    def delete(self, path: str, _with: str | None = None) -> str:
        """Delete an item to the recycle bin; a folder takes its descendants with it
        (each logged, as OneDrive for Business reports them)."""
        with self.lock:
            node = self.nodes[self.id_of(path)]
            for child in [n for n in self.nodes.values() if n.parent == node.id and not n.deleted]:
                self.delete(self.path_of(child.id), _with or node.id)
            node.deleted = True
            node.deleted_with = _with or node.id
            self._changed(node)
            return node.id

    def restore(self, item_id: str, *, report_children: bool = False) -> str:
        """Restore an item from the recycle bin to where it was, with everything deleted
        along with it, under the same ids. Microsoft documents no way to tell a restore
        from an upload in delta, nor whether the restored folder's contents are listed:
        by default only the item itself is logged (the case a client must survive);
        `report_children` logs its descendants too."""
        with self.lock:
            came_back = [n for n in self.nodes.values() if n.deleted and n.deleted_with == item_id]
            if not came_back:
                raise KeyError(item_id)
            for node in came_back:
                node.deleted, node.deleted_with = False, None
                node.touch(content_changed=False)
            for node in sorted(came_back, key=lambda n: len(self.ancestors(n.id))):  # parents first
                if node.id == item_id or report_children:
                    self._changed(node)
            return item_id

    def set_fields(self, path: str, *, by: str = "alex", **values) -> str:
        """Edit list columns (None clears one): the item's eTag and modification time
        change, its cTag does not (its content did not)."""
        with self.lock:
            node = self.nodes[self.id_of(path)]
            for name, value in values.items():
                if value is None:
                    node.fields.pop(name, None)
                else:
                    node.fields[name] = value
            node.modified_by = by
            node.touch(content_changed=False)
            self._changed(node)
            return node.id

    # -- permissions --------------------------------------------------------------------

    def break_inheritance(self, path: str) -> str:
        """The item gets permissions of its own: a copy of those it inherited."""
        with self.lock:
            node = self.nodes[self.id_of(path) if path else self.root_id]
            if not node.unique:
                node.grants = [dict(g, id=self._grant_id()) for g in self.permission_holder(node.id).grants]
                node.unique = True
                self._changed(node, sharing=True)
            return node.id

    def reset_inheritance(self, path: str) -> str:
        with self.lock:
            node = self.nodes[self.id_of(path)]
            node.unique, node.grants = False, []
            self._changed(node, sharing=True)
            return node.id

    def grant(self, path: str, who: str, roles=("read",)) -> str:
        """Share an item with a user (by `USERS` key) or a site group (`group:NAME`)."""
        with self.lock:
            item_id = self.break_inheritance(path) if path else self.root_id
            node = self.nodes[item_id]
            if who.startswith("group:"):
                granted = {"siteGroup": {"displayName": who[6:], "id": str(10 + len(node.grants)), "loginName": who[6:]}}
            else:
                user = USERS[who]
                granted = {"user": dict(user), "siteUser": {"displayName": user["displayName"], "id": str(20 + len(
                    node.grants)), "loginName": f"i:0#.f|membership|{user['email']}"}}
            node.grants.append(self._grant(granted, list(roles)))
            self._changed(node, sharing=True)
            return item_id

    def share_link(self, path: str, kind: str = "view", scope: str = "organization", people=()) -> str:
        """A sharing link; `people` (USERS keys) for a `users`-scoped one."""
        with self.lock:
            item_id = self.break_inheritance(path)
            node = self.nodes[item_id]
            token = base64.urlsafe_b64encode(os.urandom(18)).decode()
            link = {"id": self._grant_id(), "roles": ["write" if kind == "edit" else "read"],
                    "link": {"scope": scope, "type": kind, "preventsDownload": False,
                             "webUrl": f"{self.site.web_url}/:b:/s/{token}"},
                    "shareId": f"u!{token}", "hasPassword": False, "expirationDateTime": "0001-01-01T00:00:00Z"}
            if people:
                link["grantedToIdentitiesV2"] = [{"user": dict(USERS[p])} for p in people]
            node.grants.append(link)
            self._changed(node, sharing=True)
            return item_id

    def revoke(self, path: str, who: str) -> str:
        """Remove a user's (or group's) grant from an item with permissions of its own."""
        with self.lock:
            node = self.nodes[self.id_of(path) if path else self.root_id]
            node.grants = [g for g in node.grants if _grantee(g) != who]
            self._changed(node, sharing=True)
            return node.id

    def permission_holder(self, item_id: str) -> Node:
        """The item whose permissions `item_id` has: itself or its nearest ancestor with
        permissions of its own."""
        node = self.nodes[item_id]
        while not node.unique:
            node = self.nodes[node.parent]
        return node

    def permissions_json(self, node: Node) -> list[dict]:
        """`GET .../permissions`: the effective permissions, as Graph lists them."""
        holder = self.permission_holder(node.id)
        out = []
        for grant in holder.grants:
            entry = dict(grant)
            if holder.id != node.id and self.report_inherited_from:
                entry["inheritedFrom"] = {"driveId": self.id, "id": holder.id,
                                          "path": f"/drives/{self.id}/root:/{self.path_of(holder.id)}".rstrip(":/")}
            out.append(entry)
        return out

    def shared_facet(self, node: Node, *, hierarchical: bool) -> dict | None:
        """The `shared` facet delta gives `node`: with hierarchical sharing, on the roots
        of permission hierarchies only (empty when not shared); otherwise on every item
        whose effective permissions share it (links or people)."""
        holder = node if hierarchical else self.permission_holder(node.id)
        if hierarchical and not node.unique:
            return None
        scopes = [g["link"].get("scope") for g in holder.grants if "link" in g]
        people = [g for g in holder.grants if "user" in (g.get("grantedToV2") or {})]
        if not scopes and not people:
            return {} if hierarchical else None
        scope = next((s for s in ("anonymous", "organization", "users") if s in scopes), "users")
        return {"scope": scope, "owner": {"user": {"displayName": "Megan Bowen", "id": USERS["megan"]["id"]}}}

    def _grant(self, granted: dict, roles) -> dict:
        out = {"id": self._grant_id(), "roles": list(roles), "grantedToV2": granted}
        if "user" in granted:  # the deprecated form, still sent beside V2
            out["grantedTo"] = {"user": granted["user"]}
        return out

    def _grant_id(self) -> str:
        self.grant_seq += 1
        return base64.b64encode(f"grant-{self.id[-6:]}-{self.grant_seq}".encode()).decode()

    def _list_item_id(self) -> int:
        self.next_list_item += 1
        return self.next_list_item - 1

    def invalidate_tokens(self) -> None:
        """Every delta link issued so far now answers 410 Gone."""
        with self.lock:
            self.oldest_valid = self.seq + 1

    def invalidate_list_tokens(self) -> None:
        """Every list-item delta link issued so far now answers 410 Gone."""
        with self.lock:
            self.list_oldest_valid = self.seq + 1

    def _changed(self, node: Node, sharing: bool = False) -> None:
        """Log a change; a sharing change (permissions only) is not one of the list item."""
        self.seq += 1
        snapshot = self.delta_json(node)
        if sharing:
            snapshot["_sharing_change"] = True
        self.log.append((self.seq, snapshot))
        if not sharing and node.kind != "root":
            self.list_log.append((self.seq, node.id))

    # -- reading -----------------------------------------------------------------------

    def _child(self, parent: str, name: str) -> str | None:
        for node in self.nodes.values():
            if node.parent == parent and not node.deleted and node.name.casefold() == name.casefold():
                return node.id
        return None

    def id_of(self, path: str) -> str:
        with self.lock:
            parent = self.folder(path.rsplit("/", 1)[0] if "/" in path else "")
            found = self._child(parent, path.rsplit("/", 1)[-1])
            if found is None:
                raise KeyError(path)
            return found

    def path_of(self, item_id: str) -> str:
        parts, node = [], self.nodes[item_id]
        while node.kind != "root":
            parts.append(node.name)
            node = self.nodes[node.parent]
        return "/".join(reversed(parts))

    def live(self) -> list[Node]:
        """Every existing item, parents before children (a full enumeration's order)."""
        out, stack = [], [self.root_id]
        while stack:
            node = self.nodes[stack.pop()]
            out.append(node)
            children = sorted((n for n in self.nodes.values() if n.parent == node.id and not n.deleted),
                              key=lambda n: n.name, reverse=True)
            stack.extend(n.id for n in children)
        return out

    def web_url(self, node: Node) -> str:
        base = f"{self.site.web_url}/{quote(self.url_name)}"
        path = self.path_of(node.id) if node.kind != "root" else ""
        return f"{base}/{quote(path)}" if path else base

    # -- JSON as Graph shows it ------------------------------------------------------

    def parent_reference(self, node: Node, with_path: bool = False) -> dict:
        ref = {"driveType": "documentLibrary", "driveId": self.id, "siteId": self.site.id}
        if node.parent is not None:
            ref["id"] = node.parent
            if with_path:
                parent_path = self.path_of(node.parent) if self.nodes[node.parent].kind != "root" else ""
                ref["path"] = f"/drives/{self.id}/root:" + (f"/{parent_path}" if parent_path else "")
        return ref

    def item_json(self, node: Node, *, in_delta: bool = False) -> dict:
        out = {
            "createdDateTime": _stamp(node.created), "eTag": f'"{{{node.guid}}},{node.version}"',
            "id": node.id, "lastModifiedDateTime": _stamp(node.modified), "name": node.name,
            "webUrl": self.web_url(node), "cTag": f'"c:{{{node.guid}}},{node.content_version}"',
            "createdBy": {"user": USERS["megan"]}, "lastModifiedBy": {"user": USERS[node.modified_by]},
            "parentReference": self.parent_reference(node, with_path=not in_delta),
            "fileSystemInfo": {"createdDateTime": _stamp(node.created), "lastModifiedDateTime": _stamp(node.modified)},
        }
        if in_delta and not self.delta_ctag:
            del out["cTag"]  # OneDrive for Business leaves cTag out of delta changes
        if node.kind == "root":
            out["root"] = {}
        if node.kind in ("root", "folder"):
            out["folder"] = {"childCount": sum(1 for n in self.nodes.values() if n.parent == node.id and not n.deleted)}
            out["size"] = 0
        else:
            out["size"] = len(node.content)
            out["file"] = {"mimeType": _mime(node.name), "hashes": {"quickXorHash": node.quick_xor()}}
        return out

    def delta_json(self, node: Node) -> dict:
        """A change as the log keeps it: what delta shows, plus (keys starting with `_`)
        what a response adds or leaves out depending on how it was asked for."""
        if node.deleted:  # delete: no name, no cTag
            out = {"id": node.id, "parentReference": self.parent_reference(node), "deleted": {"state": "deleted"}}
        else:
            out = self.item_json(node, in_delta=True)
        out["_shared_hierarchical"] = self.shared_facet(node, hierarchical=True) if not node.deleted else None
        out["_shared"] = self.shared_facet(node, hierarchical=False) if not node.deleted else None
        return out

    def sharepoint_ids(self, node: Node) -> dict:
        return {"listId": self.list_id, "listItemId": str(node.list_item_id), "listItemUniqueId": node.guid.lower(),
                "siteId": self.site.id.split(",")[1], "siteUrl": self.site.web_url,
                "webId": self.site.id.split(",")[2]}

    def list_item_json(self, node: Node, columns: list[str] | None) -> dict:
        """A list item as the list's delta shows it, its `fields` expanded (all of them,
        or the `$select`ed ones; empty ones are left out, as SharePoint does)."""
        if node.deleted:
            return {"id": str(node.list_item_id), "deleted": {"state": "deleted"}}
        fields = {"FileLeafRef": node.name, **node.fields} if columns is None else {
            k: v for k, v in node.fields.items() if k in columns}
        return {"id": str(node.list_item_id), "eTag": f'"{{{node.guid}}},{node.version}"',
                "lastModifiedDateTime": _stamp(node.modified), "webUrl": self.web_url(node),
                "contentType": {"id": "0x0101" if node.kind == "file" else "0x0120",
                                "name": "Document" if node.kind == "file" else "Folder"},
                "fields": {"@odata.etag": f'"{{{node.guid}}},{node.version}"', **fields}}

    def list_changes_since(self, token: int) -> list[Node]:
        """The list items changed after `token`, each once, in its latest state."""
        seen, out = set(), []
        for _, node_id in reversed([e for e in self.list_log if e[0] > token]):
            if node_id not in seen:
                seen.add(node_id)
                out.append(self.nodes[node_id])
        return list(reversed(out))

    def ancestors(self, item_id: str) -> list[Node]:
        chain, node = [], self.nodes[item_id]
        while node.parent is not None:
            node = self.nodes[node.parent]
            chain.append(node)
        return list(reversed(chain))

    def changes_since(self, token: int, sharing: bool = False) -> list[dict]:
        """The delta after `token`: each change's snapshot, its live ancestors first.
        Changes of permissions alone are in it only when asked for (`sharing`)."""
        out: list[dict] = []
        for _, snapshot in [entry for entry in self.log if entry[0] > token]:
            if snapshot.get("_sharing_change") and not sharing:
                continue
            for ancestor in self.ancestors(snapshot["id"]):
                if not ancestor.deleted:
                    out.append(self.delta_json(ancestor))
            out.append(snapshot)
        return out


def site_groups(site) -> list[tuple[dict, list[str]]]:
    """A site's three SharePoint groups, as a library root's permissions grant them."""
    title = getattr(site, "title", "Site")
    return [({"displayName": f"{title} Owners", "id": "3", "loginName": f"{title} Owners"}, ["owner"]),
            ({"displayName": f"{title} Members", "id": "5", "loginName": f"{title} Members"}, ["write"]),
            ({"displayName": f"{title} Visitors", "id": "4", "loginName": f"{title} Visitors"}, ["read"])]


def _grantee(grant: dict) -> str | None:
    granted = grant.get("grantedToV2") or {}
    if "siteGroup" in granted:
        return "group:" + granted["siteGroup"]["displayName"]
    email = (granted.get("user") or {}).get("email")
    return next((k for k, u in USERS.items() if u["email"] == email), None)


def _mime(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
