"""The cluster schema: created by versioned steps, idempotent, safe to run from several
instances at once, transactional per step, and refused when newer than this ingestd."""

from __future__ import annotations

import threading

import pytest

from ingestd.cluster import schema
from ingestd.cluster.schema import Step
from ingestd.errors import MigrationPending, SchemaTooNew

TABLES = {"schema_version", "schema_history", "instances", "sources", "jobs", "job_items", "documents", "versions",
          "changes", "feed", "sinks"}
LATEST = schema.latest()


def tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_init_creates_every_table_and_records_its_version(pg):
    with pg.connect(autocommit=True) as conn:
        assert schema.version(conn) == 0
        done = schema.migrate(conn)
        assert done == ["cluster database: applied 1 base", "cluster database: applied 2 sinks"]
        assert tables(conn) == TABLES
        assert schema.check(conn) == LATEST == 2
        assert [(v, s) for v, s, _at, _by in schema.history(conn)] == [(1, "base"), (2, "sinks")]


def test_a_step_1_database_gains_the_sinks_table_and_keeps_its_rows(pg):
    """A database made by the previous ingestd (step 1 only, with a source row) is migrated
    by step 2 alone; running init again is a no-op."""
    with pg.connect(autocommit=True) as conn:
        assert schema.migrate(conn, schema.STEPS[:1]) == ["cluster database: applied 1 base"]
        conn.execute("INSERT INTO sources (name, kind) VALUES ('bucket', 's3')")
        with pytest.raises(MigrationPending, match="pending: 2 sinks"):
            schema.check(conn)
        assert schema.migrate(conn) == ["cluster database: applied 2 sinks"]
        assert "sinks" in tables(conn) and schema.check(conn) == 2
        assert conn.execute("SELECT name FROM sources").fetchall() == [("bucket",)]
        assert schema.migrate(conn) == []


def test_init_again_changes_nothing(db):
    assert schema.migrate(db) == []
    assert len(schema.history(db)) == LATEST


def test_instances_starting_at_once_migrate_once(pg):
    results, errors = [], []

    def run():
        try:
            with pg.connect(autocommit=True) as conn:
                results.append(schema.migrate(conn))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(line for r in results for line in r) == [  # each step once, whoever ran it
        f"cluster database: applied {s.version} {s.name}" for s in schema.STEPS]
    with pg.connect(autocommit=True) as conn:
        assert schema.version(conn) == LATEST and len(schema.history(conn)) == LATEST


def test_a_step_that_fails_midway_leaves_the_previous_version_whole(db):
    """DDL is transactional: a step killed (here: failing) after its first statement
    leaves neither its tables nor its version; the next run applies it from the start."""
    nxt = LATEST + 1
    steps = [*schema.STEPS, Step(nxt, "broken", "creates a table, then fails", "CREATE TABLE extra (x int); SELECT 1/0;")]
    with pytest.raises(Exception, match="division by zero"):
        schema.migrate(db, steps)
    assert schema.version(db) == LATEST
    assert "extra" not in tables(db)
    fixed = [*schema.STEPS, Step(nxt, "fixed", "creates a table", "CREATE TABLE extra (x int);")]
    assert schema.migrate(db, fixed) == [f"cluster database: applied {nxt} fixed"]
    assert "extra" in tables(db) and schema.version(db) == nxt


def test_a_newer_schema_is_refused(db):
    db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew, match="schema 99, newer than this ingestd"):
        schema.check(db)
    with pytest.raises(SchemaTooNew):
        schema.migrate(db)
    assert SchemaTooNew.exit_code == 76


def test_an_older_schema_asks_for_init(pg):
    with pg.connect(autocommit=True) as conn:
        with pytest.raises(MigrationPending, match="run `ingestd cluster init`"):
            schema.check(conn)
