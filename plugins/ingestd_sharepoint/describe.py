"""How an item is described to the store: its origin URI and its document's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ingestd.plugin.kit import display

from .items import Item


@dataclass(frozen=True)
class Describe:
    target: object  # graph.Target

    def origin(self, item: Item) -> str:
        return item.web_url or f"{self.target.drive_url or self.target.site_url}#item={item.id}"

    def metadata(self, item: Item, path: str | None, served: dict | None = None,
                 permissions: dict | None = None) -> dict:
        """`served`: the listed and served sizes and hashes of bytes that differ from the
        listing (`verify.ServedDiffers.metadata`), kept beside the listed ones.
        `permissions`: the effective permissions' snapshot (`access.Access.snapshot`)."""
        t = self.target
        values = {
            "item_id": item.id, "drive_id": t.drive_id, "site_id": t.site_id, "site_url": t.site_url,
            "library": t.drive_name, "path": display(path) if path else None, "etag": item.etag, "ctag": item.ctag,
            "quick_xor_hash": item.qxh, "created_at": item.created, "created_by": item.created_by,
            "last_modified_at": item.modified, "last_modified_by": item.modified_by, "content_type": item.mime,
            "web_url": item.web_url, "columns": json.loads(item.fields) if item.fields else None,
            "permissions": permissions, **(served or {}),
        }
        return {k: v for k, v in values.items() if v is not None}
