"""A job's per-item records in the cluster database (`job_items`): what the embedded items
file holds, one row per record, numbered from 0 in the order the job recorded them.

The rows are written by the runner inside the fenced transaction that commits the
catalogue records they describe (a fenced-out holder's rows never land, and no row names
a document the catalogue does not hold), and by `cluster import` from an embedded items
file, verbatim. Either way a row is the embedded record, so `GET /ingest/{id}/items`
serves the same JSON from every instance as an embedded daemon does. The page cursor is
the next row's number (embedded: a byte offset); both are opaque digits to a client.
"""

from __future__ import annotations

from typing import Any

from ingestd._lib import redact


def insert(cur, job_id: str, first: int, records: list[dict[str, Any]]) -> int:
    """Write `records` as rows `first`, `first + 1`, ...; the number of the next row."""
    from psycopg.types.json import Jsonb

    if records:
        # as the embedded items file: only free text is masked, before encoding
        cur.executemany("INSERT INTO job_items (job_id, seq, item) VALUES (%s, %s, %s)",
                        [(job_id, first + n, Jsonb(redact.scrub(r))) for n, r in enumerate(records)])
    return first + len(records)


def page(conn, job_id: str, start: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
    """Up to `limit` records from row `start`: (records, the row after them, whether more follow)."""
    rows = conn.execute("SELECT seq, item FROM job_items WHERE job_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
                        (job_id, max(start, 0), limit + 1)).fetchall()
    shown = rows[:limit]
    end = shown[-1][0] + 1 if shown else max(start, 0)
    return [item for _seq, item in shown], end, len(rows) > limit
