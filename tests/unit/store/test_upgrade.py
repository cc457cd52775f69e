"""A catalogue written by ingestd 0.1.0 gains the change feed, replaying its history."""

import sqlite3

import pytest

from ingestd.store import upgrade
from ingestd.store.catalogue import Store

OLD_SCHEMA = """
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, origin_uri TEXT NOT NULL,
    current_seq INTEGER NOT NULL, deleted_at TEXT, deleted_job TEXT);
CREATE INDEX documents_source ON documents(source);
CREATE TABLE versions (doc_id TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    mime TEXT NOT NULL, origin_uri TEXT NOT NULL, source_modified_at TEXT, ingested_at TEXT NOT NULL,
    job_id TEXT NOT NULL, metadata TEXT NOT NULL, PRIMARY KEY (doc_id, seq));
CREATE INDEX versions_sha256 ON versions(sha256);
"""
SHA = {n: f"{n:064x}" for n in range(1, 9)}


def old_catalogue(root):
    """What 0.1.0 left: `a` edited twice, `b` deleted, `c` stored, `d` edited by a job
    whose clock ran behind the first one's."""
    root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "documents.sqlite")
    db.executescript(OLD_SCHEMA)
    docs = [("a", "s1", "file:///a", 3, None, None), ("b", "s2", "s3://b/b", 1, "2026-01-01T00:00:05.000Z", "job-5"),
            ("c", "s1", "file:///c", 1, None, None), ("d", "s2", "s3://b/d", 2, None, None)]
    versions = [("a", 1, SHA[1], "2026-01-01T00:00:01.000Z", "job-1"), ("a", 2, SHA[2], "2026-01-01T00:00:03.000Z", "job-3"),
                ("a", 3, SHA[3], "2026-01-01T00:00:06.000Z", "job-6"), ("b", 1, SHA[4], "2026-01-01T00:00:01.000Z", "job-1"),
                ("c", 1, SHA[5], "2026-01-01T00:00:04.000Z", "job-4"), ("d", 1, SHA[6], "2026-01-01T00:00:02.000Z", "job-2"),
                ("d", 2, SHA[7], "2026-01-01T00:00:00.500Z", "job-0")]  # the clock went back
    db.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?)", docs)
    db.executemany("INSERT INTO versions VALUES (?,?,?,10,'text/plain','uri',NULL,?,?,'{}')", versions)
    db.commit()
    db.close()
    return root / "documents.sqlite"


def feed_rows(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT cursor, type, doc_id, version, job_id FROM changes ORDER BY cursor").fetchall()
    finally:
        db.close()


def test_the_feed_replays_history_in_ingestion_order(tmp_path):
    path = old_catalogue(tmp_path / "state")
    assert upgrade.needed(path)
    assert upgrade.migrate(path) == 8
    assert feed_rows(path) == [
        (1, "stored", "a", 1, "job-1"), (2, "stored", "b", 1, "job-1"),
        (3, "stored", "d", 1, "job-2"),
        (4, "updated", "d", 2, "job-0"),  # after its version 1, whatever its clock said
        (5, "updated", "a", 2, "job-3"), (6, "stored", "c", 1, "job-4"),
        (7, "deleted", "b", 1, "job-5"), (8, "updated", "a", 3, "job-6"),
    ]
    store = Store(tmp_path / "state")
    try:
        replayed = {}
        for c in store.feed.read(None, 100).changes:
            if c.type == "deleted":
                replayed.pop(c.doc_id, None)
            else:
                replayed[c.doc_id] = c.sha256
        live = {d.doc_id: d.sha256 for d in store.list(limit=100).documents}
        assert replayed == live == {"a": SHA[3], "c": SHA[5], "d": SHA[7]}
        assert store.get("a").kind == "content"
        assert store.commit([]).changed == []  # and the counter goes on from the backfill
        assert store.feed.head() == 8
    finally:
        store.close()


def test_running_it_again_changes_nothing(tmp_path):
    path = old_catalogue(tmp_path / "state")
    upgrade.migrate(path)
    before = feed_rows(path)
    assert not upgrade.needed(path)
    assert upgrade.migrate(path) == 0
    assert feed_rows(path) == before


def test_a_migration_that_fails_part_way_leaves_the_old_catalogue_whole(tmp_path, monkeypatch):
    """One transaction: the column, the tables and the backfill land together or not at
    all, so the next start migrates from scratch."""
    path = old_catalogue(tmp_path / "state")
    monkeypatch.setattr(upgrade, "_BACKFILL", "INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(sqlite3.OperationalError):
        upgrade.migrate(path)
    db = sqlite3.connect(path)
    try:
        assert "kind" not in {r[1] for r in db.execute("PRAGMA table_info(versions)")}
        assert db.execute("SELECT name FROM sqlite_master WHERE name IN ('changes', 'feed')").fetchall() == []
    finally:
        db.close()
    monkeypatch.undo()
    assert upgrade.migrate(path) == 8


def test_a_new_catalogue_needs_nothing(tmp_path):
    Store(tmp_path / "state").close()
    assert not upgrade.needed(tmp_path / "state" / "documents.sqlite")
    assert not upgrade.needed(tmp_path / "nowhere" / "documents.sqlite")


def test_the_store_refuses_an_unmigrated_catalogue_and_leaves_it_alone(tmp_path):
    """Only the migration step changes a catalogue's layout: a store opened on one from
    0.1.0 says to migrate instead of patching it (or, worse, starting an empty feed that
    the step would then take for done)."""
    from ingestd.errors import MigrationPending

    path = old_catalogue(tmp_path / "state")
    with pytest.raises(MigrationPending, match="ingestd migrate"):
        Store(tmp_path / "state")
    assert upgrade.needed(path)
    assert upgrade.migrate(path) == 8
