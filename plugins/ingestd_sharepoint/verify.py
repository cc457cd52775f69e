"""Whether downloaded bytes are the ones a listing describes, and how they differ."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .download import Fetched
from .items import Item

# Formats whose properties SharePoint writes into the file as it serves it (property
# demotion): Word, Excel, PowerPoint and Visio, Open XML and the older binary formats.
OFFICE_SUFFIXES = frozenset(
    ".docx .docm .dotx .dotm .doc .dot .xlsx .xlsm .xltx .xltm .xlsb .xls .xlt .pptx .pptm .potx .potm "
    ".ppsx .ppsm .ppt .pot .pps .vsdx .vsdm .vsd".split())
OFFICE_MIME_PREFIXES = ("application/vnd.openxmlformats-officedocument.", "application/vnd.ms-",
                        "application/msword", "application/vnd.visio")

# SharePoint's eTag (and the download host's ETag): "{unique id},version"
_SP_ETAG = re.compile(r'"?\{([0-9A-Fa-f-]{36})\},(\d+)"?')


def mismatch(got: Fetched, item: Item) -> str | None:
    """What differs between the bytes and the listing (size, quickXorHash, sha256 where
    Graph gives them), or None when they agree."""
    if item.size is not None and got.size != item.size:
        return f"downloaded {got.size} bytes but Graph lists size {item.size}"
    if item.qxh and got.qxh != item.qxh:
        return f"quickXorHash of the downloaded bytes is {got.qxh}, Graph lists {item.qxh}"
    if item.sha256 and got.sha256 != item.sha256.lower():
        return "sha256 of the downloaded bytes differs from Graph's sha256Hash"
    return None


def rewritten_when_served(item: Item) -> bool:
    """An Office file, which SharePoint may serve with other bytes than it lists. For
    anything else the same wrong bytes twice are not a quirk to record but a fault."""
    suffix = os.path.splitext((item.name or "").lower())[1]
    return suffix in OFFICE_SUFFIXES or (item.mime or "").lower().startswith(OFFICE_MIME_PREFIXES)


def newer_than_listed(listed: str | None, served: str | None) -> bool:
    """Whether the download came from another version of the item than the listing:
    both tags of SharePoint's form, for the same file, with different versions. Tags in
    any other form say nothing (the download host need not use the item's eTag)."""
    a, b = _SP_ETAG.fullmatch(listed or ""), _SP_ETAG.fullmatch(served or "")
    return bool(a and b) and a.group(1).lower() == b.group(1).lower() and a.group(2) != b.group(2)


@dataclass(frozen=True)
class ServedDiffers:
    """SharePoint served other bytes than it lists for an unchanged item, the same bytes
    twice (it rewrites properties inside Office files as it serves them)."""

    listed_size: int | None
    listed_qxh: str | None
    served_size: int
    served_qxh: str
    served_sha256: str
    problem: str

    def metadata(self) -> dict:
        return {"listed_size": self.listed_size, "listed_quick_xor_hash": self.listed_qxh,
                "served_size": self.served_size, "served_quick_xor_hash": self.served_qxh}
