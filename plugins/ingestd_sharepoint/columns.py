"""SharePoint list columns (`columns = [...]`): read from the library's list-item delta,
the configured columns selected up front, so a run costs one more delta request per
library, not a request per item.

Graph's drive delta cannot expand `listItem` (Microsoft, onedrive-api-docs #1181: "the
delta API does not support expanding the listItem relationship"); the list's own delta
(`GET /sites/{site}/lists/{list}/items/delta`) takes `$expand=fields($select=...)`. Its
items are joined to the drive's by `sharepointIds.listItemId`, which the drive delta is
asked for (`$select=*,sharepointIds`, as Microsoft's scan guidance shows). A column edit
changes the item's eTag, so the drive delta reports it too; an edit that lands between
the two reads is caught from the list's side, next run at the latest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from ingestd.errors import Code, ConnectorError

from .delta import DeltaReader, ResyncRequired, seg

MAX_VALUE_CHARS = 16_384  # a column value longer than this (as JSON) is kept as null, and logged


def drive_delta_query(columns: list[str]) -> str:
    """What the drive delta asks for when columns are joined: every default property
    plus the list item's id."""
    return "?$select=*,sharepointIds" if columns else ""


def list_delta_url(root: str, site_id: str, list_id: str, columns: list[str]) -> str:
    return (f"{root}/sites/{seg(site_id)}/lists/{seg(list_id)}/items/delta"
            f"?$select=id&$expand=fields($select={','.join(columns)})")


def list_id(http, root: str, drive_id: str) -> str:
    """The document library's list behind a drive (once per library; cached)."""
    _, body, _ = http.get_json(f"{root}/drives/{seg(drive_id)}/list?$select=id", check=_has_id)
    return body["id"]


def _has_id(body: dict) -> str | None:
    return None if isinstance(body.get("id"), str) and body["id"] else "the list has no 'id'"


def canonical(fields, columns: list[str], log=None, item_id: str | None = None) -> str:
    """The configured columns' values as one JSON text: every column present (null when
    SharePoint leaves it out, as it does with empty ones), keys sorted, so that equal
    values compare equal as text."""
    fields = fields if isinstance(fields, dict) else {}
    values = {}
    for name in columns:
        value = fields.get(name)
        if len(json.dumps(value, ensure_ascii=False, default=str)) > MAX_VALUE_CHARS:
            if log is not None:
                log.warning("sharepoint column value too long; kept as null", column=name, list_item_id=item_id,
                            limit=MAX_VALUE_CHARS)
            value = None
        values[name] = value
    return json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)


class ListReader:
    """Reads the list delta from `start` into (list item id, fields JSON) rows; afterwards
    `delta_link` holds where the next run starts, and `full` whether it was a whole
    enumeration."""

    def __init__(self, http, graph_url: str, columns: list[str], log):
        self.http = http
        self.graph_url = graph_url
        self.columns = columns
        self.log = log
        self.delta_link: str | None = None
        self.full = False

    def rows(self, start: str, fresh: str) -> Iterator[list[tuple[str, str]]]:
        """Pages of rows (deleted items left out: the drive delta reports deletions).
        `fresh` starts over when Graph answers 410 to `start` (or `start` is `fresh`)."""
        self.full = start == fresh
        for attempt in (1, 2):
            reader = DeltaReader(self.http, start, self.graph_url)
            try:
                for page in reader.pages():
                    yield [self._row(raw) for raw in page
                           if isinstance(raw, dict) and raw.get("id") is not None and "deleted" not in raw]
                self.delta_link = reader.delta_link
                return
            except ResyncRequired:
                if attempt == 2:
                    raise ConnectorError(Code.TRANSIENT, "Graph asked for a resync of the list twice in one run",
                                         retryable=True) from None
                self.log.warning("sharepoint list delta link expired; reading every item's columns again")
                start, self.full = fresh, True

    def _row(self, raw: dict) -> tuple[str, str]:
        item_id = str(raw["id"])
        return item_id, canonical(raw.get("fields"), self.columns, self.log, item_id)
