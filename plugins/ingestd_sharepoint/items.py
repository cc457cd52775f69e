"""The part of a Graph `driveItem` a sync needs, in one flat record.

Delta responses are partial by design: OneDrive for Business omits `cTag` on changes and
`name` on deletes, and never sends `parentReference.path`. So an item is kept by id with
its parent id and name, and paths are rebuilt from the folder tree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone

ROOT, FOLDER, FILE, OTHER, UNKNOWN = "root", "folder", "file", "other", "unknown"


@dataclass
class Item:
    id: str
    kind: str
    parent: str | None = None
    name: str | None = None
    deleted: bool = False
    size: int | None = None
    etag: str | None = None
    ctag: str | None = None
    qxh: str | None = None  # file.hashes.quickXorHash (base64)
    sha256: str | None = None  # file.hashes.sha256Hash, where Graph gives one (hex)
    web_url: str | None = None
    modified: str | None = None
    modified_by: str | None = None
    mime: str | None = None
    created: str | None = None
    created_by: str | None = None
    list_item_id: str | None = None  # sharepointIds.listItemId: joins the list's columns (`columns`)
    fields: str | None = None  # the configured columns' values, canonical JSON (`columns.canonical`)
    acl: str | None = None  # digest of the effective permissions (`permissions = true`)
    # as listed, for this job only (never saved): a pre-authenticated URL for the bytes,
    # short-lived (it carries a token: kept out of repr), and when it was listed
    download_url: str | None = field(default=None, repr=False)
    listed_at: float | None = None  # time.monotonic()
    # with `permissions`, from a delta asked for hierarchical sharing: whether the item
    # carries a `shared` facet (it is the root of a permission hierarchy: its own
    # permissions), None when the listing did not say; and whether it appears because its
    # sharing changed (`@microsoft.graph.sharedChanged`)
    shared: bool | None = None
    sharing_changed: bool = False

    @classmethod
    def from_graph(cls, raw: dict, *, sharing: bool = False) -> "Item":
        """`sharing`: the listing was asked for hierarchical sharing, so the presence of a
        `shared` facet says whether the item has permissions of its own."""
        parent = _dict(raw.get("parentReference"))
        file = _dict(raw.get("file"))
        hashes = _dict(file.get("hashes"))
        size = raw.get("size")
        list_item = _dict(raw.get("sharepointIds")).get("listItemId")
        return cls(
            id=str(raw["id"]), kind=_kind(raw), parent=parent.get("id"), name=raw.get("name"),
            deleted="deleted" in raw, size=size if isinstance(size, int) else None,
            etag=raw.get("eTag"), ctag=raw.get("cTag"), qxh=hashes.get("quickXorHash"),
            sha256=(hashes.get("sha256Hash") or None), web_url=raw.get("webUrl"),
            modified=rfc3339(raw.get("lastModifiedDateTime")), modified_by=_who(raw.get("lastModifiedBy")),
            mime=file.get("mimeType"), created=rfc3339(raw.get("createdDateTime")),
            created_by=_who(raw.get("createdBy")),
            list_item_id=str(list_item) if isinstance(list_item, (str, int)) and str(list_item) else None,
            download_url=_https(raw.get("@microsoft.graph.downloadUrl")), listed_at=time.monotonic(),
            shared=("shared" in raw) if sharing else None,
            sharing_changed=str(raw.get("@microsoft.graph.sharedChanged", "")).lower() == "true",
        )

    def with_content_of(self, newer: "Item") -> "Item":
        """This item as listed, with the content (and its tags) of a newer reading of it.
        Where it is stays as listed: a move is the next delta's to report and plan."""
        return replace(self, size=newer.size, etag=newer.etag, ctag=newer.ctag, qxh=newer.qxh,
                       sha256=newer.sha256, modified=newer.modified, modified_by=newer.modified_by,
                       mime=newer.mime, download_url=newer.download_url, listed_at=newer.listed_at)

    @classmethod
    def from_row(cls, row) -> "Item":
        names = {f.name for f in fields(cls)}
        values = {k: row[k] for k in row.keys() if k in names}
        values["deleted"] = bool(int(values.get("deleted") or 0))
        values["sharing_changed"] = bool(int(values.get("sharing_changed") or 0))
        if values.get("shared") is not None:
            values["shared"] = bool(int(values["shared"]))
        return cls(**values)

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    @property
    def in_tree(self) -> bool:
        """Kept in the folder tree: folders, and packages (whose contents are skipped)."""
        return self.kind in (ROOT, FOLDER, OTHER)


COLUMNS = [f.name for f in fields(Item)]
TRANSIENT = ("download_url", "listed_at", "shared", "sharing_changed")  # in a job's scratch tables only


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _https(url) -> str | None:
    return url if isinstance(url, str) and url.startswith("https://") else None


def _kind(raw: dict) -> str:
    if "root" in raw:
        return ROOT
    if "folder" in raw:
        return FOLDER
    if "file" in raw:
        return FILE
    if "package" in raw:  # OneNote notebooks and the like: not plain files, not walked into
        return OTHER
    return UNKNOWN  # a deleted item often carries no facet but `deleted`


def _who(identity_set) -> str | None:
    if not isinstance(identity_set, dict):
        return None
    for key in ("user", "application", "device"):
        who = identity_set.get(key)
        if isinstance(who, dict):
            return who.get("email") or who.get("displayName") or who.get("id")
    return None


def rfc3339(value) -> str | None:
    """Graph timestamps normalised to `YYYY-MM-DDTHH:MM:SS[.mmm]Z`."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    spec = "milliseconds" if when.microsecond else "seconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")
