"""How an item is described to the store: its origin URI and its document's metadata."""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.plugin.kit import display

from .items import Item


@dataclass(frozen=True)
class Describe:
    target: object  # graph.Target

    def origin(self, item: Item) -> str:
        return item.web_url or f"{self.target.drive_url or self.target.site_url}#item={item.id}"

    def metadata(self, item: Item, path: str | None, served: dict | None = None) -> dict:
        """`served`: the listed and served sizes and hashes of bytes that differ from the
        listing (`verify.ServedDiffers.metadata`), kept beside the listed ones."""
        t = self.target
        values = {
            "item_id": item.id, "drive_id": t.drive_id, "site_id": t.site_id, "library": t.drive_name,
            "path": display(path) if path else None, "etag": item.etag, "ctag": item.ctag,
            "quick_xor_hash": item.qxh, "last_modified_by": item.modified_by, "content_type": item.mime,
            "web_url": item.web_url, **(served or {}),
        }
        return {k: v for k, v in values.items() if v is not None}
