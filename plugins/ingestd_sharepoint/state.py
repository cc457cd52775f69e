"""A source's sync state: one SQLite file in its state directory.

- `meta`: the delta link, the resolved site and drive ids, the scope they were made for.
- `items`: every item of the drive seen so far, by id (folders too: paths are rebuilt
  from them), with the origin and sha256 of the document delivered for it, if any.
- `retry`: items whose last attempt failed; fetched again by id on the next run, since
  the delta link moves past them.
- `served`: items whose served bytes differ from their listing (Office files SharePoint
  rewrites): both sizes and hashes, kept for the provenance of later re-points, and
  under `verify = "strict"` how many runs in a row refused the same bytes.
- `gone`: folders, and files with a delivered document, deleted at the source, kept for
  `GONE_DAYS` (SharePoint's recycle bin keeps items 93 days): a restore brings the same
  ids back, and delta may report only the restored folder, not what came back inside it.

A job's scratch (the items this run saw, and what to do with each) lives in TEMP tables
of the same connection, so a first sync of a large library costs disk, not memory, and
vanishes with the connection. Nothing in the persistent tables changes until `finish`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from ingestd.plugin.kit import open_db

from .items import COLUMNS, FILE, FOLDER, OTHER, ROOT, TRANSIENT, Item

_ITEM_COLS = [c for c in COLUMNS if c != "deleted" and c not in TRANSIENT]
_TYPES = {"size": "INTEGER", "deleted": "INTEGER", "listed_at": "REAL", "shared": "INTEGER",
          "sharing_changed": "INTEGER"}


def _coldefs(cols) -> str:
    return ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" + (" PRIMARY KEY" if c == "id" else "") for c in cols)


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items ({_coldefs(_ITEM_COLS)}, doc_origin TEXT, doc_sha256 TEXT);
CREATE INDEX IF NOT EXISTS items_parent ON items(parent);
CREATE TABLE IF NOT EXISTS retry (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS served (id TEXT PRIMARY KEY, etag TEXT, listed_size INTEGER, listed_qxh TEXT,
    served_size INTEGER NOT NULL, served_qxh TEXT NOT NULL, served_sha256 TEXT NOT NULL, refused INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gone ({_coldefs(_ITEM_COLS)}, doc_origin TEXT, doc_sha256 TEXT, gone_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS acl (id TEXT PRIMARY KEY, digest TEXT NOT NULL, snapshot TEXT NOT NULL);
"""
_SCRATCH = f"""
DROP TABLE IF EXISTS temp.seen;
DROP TABLE IF EXISTS temp.plan;
DROP TABLE IF EXISTS temp.refused;
DROP TABLE IF EXISTS temp.fields_seen;
DROP TABLE IF EXISTS temp.acl_new;
CREATE TEMP TABLE seen ({_coldefs(COLUMNS)});
CREATE TEMP TABLE fields_seen (list_item_id TEXT PRIMARY KEY, fields TEXT);
CREATE TEMP TABLE acl_new (id TEXT PRIMARY KEY, digest TEXT, snapshot TEXT);
CREATE TEMP TABLE plan (id TEXT PRIMARY KEY, action TEXT NOT NULL, path TEXT, stale INTEGER NOT NULL);
CREATE TEMP TABLE refused (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX temp.plan_action ON plan(action);
"""
BATCH = 500
GONE_DAYS = 93
_NOW = "CAST(strftime('%s', 'now') AS REAL)"


class State:
    def __init__(self, path: Path):
        self.path = path
        self.db = open_db(path)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.executescript(_SCHEMA)
        add_missing_columns(self.db)
        self.db.executescript(_SCRATCH)
        self.pending_meta: dict[str, str | None] = {}  # facts to save in finish whatever the outcome

    def close(self) -> None:
        self.db.close()

    # -- persistent state -------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def row(self, item_id: str) -> sqlite3.Row | None:
        """What was last known of an item: tracked, or deleted within `GONE_DAYS`."""
        found = self.db.execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        return found or self.db.execute("SELECT * FROM gone WHERE id=?", (item_id,)).fetchone()

    def was_gone(self, item_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM gone WHERE id=?", (item_id,)).fetchone() is not None

    def containers(self) -> Iterator[Item]:
        for row in self.db.execute("SELECT * FROM items WHERE kind IN (?, ?, ?)", (ROOT, FOLDER, OTHER)):
            yield Item.from_row(row)

    def files_under(self, parents: set[str]) -> Iterator[sqlite3.Row]:
        """Tracked files directly inside any of `parents` that this run did not see."""
        ids = sorted(parents)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            marks = ",".join("?" * len(chunk))
            yield from self.db.execute(
                f"SELECT * FROM items WHERE kind=? AND parent IN ({marks}) AND id NOT IN (SELECT id FROM seen)",
                (FILE, *chunk),
            ).fetchall()

    def unseen_files(self) -> Iterator[sqlite3.Row]:
        """Tracked files a full enumeration did not return: gone from the drive."""
        yield from self._batched("SELECT * FROM items WHERE kind=? AND id NOT IN (SELECT id FROM seen)", (FILE,))

    def live_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items WHERE doc_origin IS NOT NULL").fetchone()[0]

    def served(self, item_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM served WHERE id=?", (item_id,)).fetchone()

    def acl_digests(self) -> dict[str, str]:
        """Items with permissions of their own: id -> digest of their entries."""
        return dict(self.db.execute("SELECT id, digest FROM acl").fetchall())

    def acl_snapshot(self, item_id: str) -> str | None:
        """An item's own permission entries (JSON), as read this run or before."""
        row = self.db.execute("SELECT snapshot FROM acl_new WHERE id=?", (item_id,)).fetchone()
        row = row or self.db.execute("SELECT snapshot FROM acl WHERE id=?", (item_id,)).fetchone()
        return row[0] if row else None

    def retry_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM retry ORDER BY id")]

    # -- this job's scratch -----------------------------------------------------------

    def see(self, items: Iterable[Item]) -> None:
        """Record items as this run saw them; a later sighting of the same id wins."""
        rows = [tuple(getattr(i, c) for c in COLUMNS) for i in items]
        if not rows:
            return
        marks = ",".join("?" * len(COLUMNS))
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT OR REPLACE INTO seen ({','.join(COLUMNS)}) VALUES ({marks})", rows)
        self.db.execute("COMMIT")

    def stage_acl(self, item_id: str, digest: str | None, snapshot: str | None) -> None:
        """Permissions read this run (None: the item now inherits), saved in finish."""
        self.db.execute("INSERT OR REPLACE INTO acl_new (id, digest, snapshot) VALUES (?,?,?)",
                        (item_id, digest, snapshot))

    def see_fields(self, rows) -> None:
        """Columns read this run from the list delta: (list item id, fields JSON)."""
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO fields_seen (list_item_id, fields) VALUES (?,?)", rows)
        self.db.execute("COMMIT")

    def join_fields(self) -> None:
        """Each file seen this run gets its columns: as the list delta gave them, else as
        tracked (and its list item id, where this sighting did not carry it)."""
        self.db.execute("BEGIN")
        for table in ("items", "gone"):  # gone: back from the recycle bin, listed without its list item id
            self.db.execute(f"UPDATE seen SET list_item_id=(SELECT t.list_item_id FROM {table} t WHERE t.id=seen.id) "
                            "WHERE list_item_id IS NULL")
        self.db.execute("UPDATE seen SET fields=COALESCE((SELECT f.fields FROM fields_seen f WHERE "
                        "f.list_item_id=seen.list_item_id), (SELECT i.fields FROM items i WHERE i.id=seen.id), "
                        f"(SELECT g.fields FROM gone g WHERE g.id=seen.id)) WHERE kind='{FILE}' AND deleted=0")
        self.db.execute("COMMIT")

    def fields_changed(self) -> Iterator[tuple[sqlite3.Row, str]]:
        """Tracked files this run's drive delta did not list whose columns changed: (row,
        new fields)."""
        yield from self.db.execute(
            "SELECT i.*, f.fields AS new_fields FROM items i JOIN fields_seen f ON f.list_item_id=i.list_item_id "
            f"WHERE i.kind='{FILE}' AND i.id NOT IN (SELECT id FROM seen) AND i.fields IS NOT f.fields").fetchall()

    def set_seen_acl(self, values: list[tuple[str | None, str]]) -> None:
        """(effective permissions digest, item id) of files seen this run."""
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE seen SET acl=? WHERE id=?", values)
        self.db.execute("COMMIT")

    def files(self) -> Iterator[sqlite3.Row]:
        """Every tracked file."""
        yield from self._batched("SELECT * FROM items WHERE kind=?", (FILE,))

    def forget_seen(self) -> None:
        """A resync starts the enumeration over."""
        self.db.executescript(_SCRATCH)

    def seen(self, item_id: str) -> Item | None:
        row = self.db.execute("SELECT * FROM seen WHERE id=?", (item_id,)).fetchone()
        return Item.from_row(row) if row else None

    def seen_containers(self) -> Iterator[Item]:
        for row in self.db.execute("SELECT * FROM seen WHERE kind IN (?, ?, ?) OR deleted=1", (ROOT, FOLDER, OTHER)):
            yield Item.from_row(row)

    def seen_files(self) -> Iterator[Item]:
        """Files seen this run, plus deletions (whose kind the delta may not say)."""
        for row in self._batched("SELECT * FROM seen WHERE (kind=? OR deleted=1)", (FILE,)):
            yield Item.from_row(row)

    def seen_all(self) -> Iterator[Item]:
        for row in self._batched("SELECT * FROM seen WHERE 1", ()):
            yield Item.from_row(row)

    def tracked_file(self, item_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM items WHERE id=? AND kind=?", (item_id, FILE)).fetchone()

    def seen_live(self) -> Iterator[Item]:
        """Everything seen this run that still exists."""
        for row in self._batched("SELECT * FROM seen WHERE deleted=0", ()):
            yield Item.from_row(row)

    def _batched(self, sql: str, params: tuple) -> Iterator[sqlite3.Row]:
        """Rows of `sql` (a SELECT with a WHERE) in id order, a batch at a time, so the
        caller may write to the database between rows without a cursor held open."""
        last = ""
        while True:
            rows = self.db.execute(f"{sql} AND id>? ORDER BY id LIMIT {BATCH}", (*params, last)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    def plan(self, decisions: Iterable[tuple[str, str, str | None, bool]]) -> None:
        """(id, action, path, stale): `stale` when the tracked sha256 no longer describes
        the item's content (it changed where the run does not download it)."""
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO plan (id, action, path, stale) VALUES (?,?,?,?)", decisions)
        self.db.execute("COMMIT")

    def stale(self, item_id: str) -> bool:
        row = self.db.execute("SELECT stale FROM plan WHERE id=?", (item_id,)).fetchone()
        return bool(row and row[0])

    def refuse(self, refusals: Iterable[tuple[str, str]]) -> None:
        """Files to report as `invalid_name`, with the name at fault (their plan treats
        them as out of scope)."""
        self.db.executemany("INSERT OR REPLACE INTO refused (id, name) VALUES (?,?)", refusals)

    def refused_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM refused").fetchone()[0]

    def refused(self) -> Iterator[tuple[str, str]]:
        last = ""
        while True:
            rows = self.db.execute("SELECT id, name FROM refused WHERE id>? ORDER BY id LIMIT ?",
                                   (last, BATCH)).fetchall()
            if not rows:
                return
            yield from ((r[0], r[1]) for r in rows)
            last = rows[-1][0]

    def count(self, action: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM plan WHERE action=?", (action,)).fetchone()[0]

    def download_bytes(self) -> int:
        """The listed sizes of the planned downloads (this listing's, else the last one
        kept, for an item retried unchanged): the job's total for its progress line."""
        return self.db.execute(
            "SELECT COALESCE(SUM(COALESCE(s.size, i.size, 0)), 0) FROM plan p LEFT JOIN seen s ON s.id=p.id "
            "LEFT JOIN items i ON i.id=p.id WHERE p.action='download'").fetchone()[0]

    def planned(self, action: str) -> Iterator[tuple[str, str | None]]:
        """(id, path) of every item planned for `action`, read in batches so the
        caller may write to other tables between them."""
        last = ""
        while True:
            rows = self.db.execute("SELECT id, path FROM plan WHERE action=? AND id>? ORDER BY id LIMIT ?",
                                   (action, last, BATCH)).fetchall()
            if not rows:
                return
            for row in rows:
                yield row[0], row[1]
            last = rows[-1][0]

    # -- commits (only from finish) ---------------------------------------------------

    def transaction(self):
        return _Transaction(self.db)

    def put_item(self, item: Item, *, doc: tuple[str | None, str | None] | None = None) -> None:
        """Upsert an item's remote fields; with `doc`, also its delivered (origin, sha256)."""
        cols = ",".join(_ITEM_COLS)
        marks = ",".join("?" * len(_ITEM_COLS))
        updates = ",".join(f"{c}=excluded.{c}" for c in _ITEM_COLS if c != "id")
        values = [getattr(item, c) for c in _ITEM_COLS]
        if doc is None:
            self.db.execute(f"INSERT INTO items ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
                            values)
        else:
            self.db.execute(
                f"INSERT INTO items ({cols}, doc_origin, doc_sha256) VALUES ({marks},?,?) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}, doc_origin=excluded.doc_origin, "
                "doc_sha256=excluded.doc_sha256", [*values, *doc],
            )
        self.db.execute("DELETE FROM gone WHERE id=?", (item.id,))

    def tombstoned(self, item: Item, *, stale: bool) -> None:
        """The item still exists but its document was tombstoned (moved out of scope):
        tracked on, with the sha256 of the bytes the store still holds (unless `stale`),
        so that if it comes back unchanged the document is restored without a download."""
        self.put_item(item)
        self.db.execute("UPDATE items SET doc_origin=NULL WHERE id=?", (item.id,))
        if stale:
            self.forget_content(item.id)

    def bury(self, item_id: str) -> None:
        """The item was deleted at the source: keep what a restore needs, in `gone`."""
        self._bury("id=?", (item_id,))

    def _bury(self, where: str, params: tuple) -> None:
        cols = ",".join(_ITEM_COLS)
        self.db.execute(f"INSERT OR REPLACE INTO gone ({cols}, doc_origin, doc_sha256, gone_at) "
                        f"SELECT {cols}, NULL, doc_sha256, {_NOW} FROM items WHERE ({where}) "
                        f"AND (kind != '{FILE}' OR doc_sha256 IS NOT NULL)", params)
        self.db.execute(f"DELETE FROM items WHERE {where}", params)

    def forget_content(self, item_id: str) -> None:
        """The stored sha256 is not to be trusted: the next run downloads the item again."""
        self.db.execute("UPDATE items SET doc_sha256=NULL WHERE id=?", (item_id,))

    def set_served(self, item_id: str, etag: str | None, served, refused: int = 0) -> None:
        """Record (or with `served` None, forget) how the item's served bytes differ."""
        if served is None:
            self.db.execute("DELETE FROM served WHERE id=?", (item_id,))
            return
        self.db.execute("INSERT OR REPLACE INTO served VALUES (?,?,?,?,?,?,?,?)", (
            item_id, etag, served.listed_size, served.listed_qxh, served.served_size, served.served_qxh,
            served.served_sha256, refused))

    def mark_retry(self, item_id: str, failed: bool) -> None:
        if failed:
            self.db.execute("INSERT OR IGNORE INTO retry (id) VALUES (?)", (item_id,))
        else:
            self.db.execute("DELETE FROM retry WHERE id=?", (item_id,))

    def apply_quiet(self, *, full: bool) -> None:
        """Everything the run learnt that needed no document event: folders, untouched
        or out-of-scope files, items gone that never had a document."""
        cols = ",".join(_ITEM_COLS)
        updates = ",".join(f"{c}=excluded.{c}" for c in _ITEM_COLS if c != "id")
        db = self.db
        db.execute(f"INSERT INTO items ({cols}) SELECT {cols} FROM seen WHERE deleted=0 AND kind != ? "
                   f"ON CONFLICT(id) DO UPDATE SET {updates}", (FILE,))
        db.execute(f"INSERT INTO items ({cols}) SELECT {','.join('s.' + c for c in _ITEM_COLS)} FROM seen s "
                   "JOIN plan p ON p.id=s.id WHERE s.deleted=0 AND p.action IN ('keep', 'forget') "
                   f"ON CONFLICT(id) DO UPDATE SET {updates}")
        db.execute("UPDATE items SET doc_origin=NULL WHERE id IN (SELECT id FROM plan WHERE action='forget')")
        db.execute("UPDATE items SET doc_sha256=NULL WHERE id IN (SELECT id FROM plan WHERE stale=1 "
                   "AND action IN ('keep', 'forget'))")
        db.execute("DELETE FROM items WHERE id IN (SELECT id FROM plan WHERE action='drop')")
        self._bury(f"kind != '{FILE}' AND id IN (SELECT id FROM seen WHERE deleted=1)", ())
        db.execute("DELETE FROM served WHERE id NOT IN (SELECT id FROM items) AND id NOT IN (SELECT id FROM retry)")
        if full:
            self._bury(f"kind != '{FILE}' AND id NOT IN (SELECT id FROM seen)", ())
        db.execute(f"DELETE FROM gone WHERE id IN (SELECT id FROM items) OR gone_at < {_NOW} - ?",
                   (GONE_DAYS * 86400,))
        db.execute("DELETE FROM retry WHERE id IN (SELECT id FROM plan WHERE action IN ('keep', 'drop', 'forget'))")
        db.execute("INSERT OR REPLACE INTO acl (id, digest, snapshot) SELECT id, digest, snapshot FROM acl_new "
                   "WHERE digest IS NOT NULL")
        db.execute("DELETE FROM acl WHERE id IN (SELECT id FROM acl_new WHERE digest IS NULL) "
                   "OR id NOT IN (SELECT id FROM items)")

    def set_meta(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, value))


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns an item gained since the file was made (0.1's has no `created`, `fields`,
    `acl`, ...): added, empty, so that nothing else changes for the rows already there."""
    for table in ("items", "gone"):
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for col in _ITEM_COLS:
            if col not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {_TYPES.get(col, 'TEXT')}")


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind, exc, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False
