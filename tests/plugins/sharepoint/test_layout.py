"""The source directory's layout and the step that moves ingestd 0.1's single-library state
into it (`per-library-state`): the saved delta link and resolved ids survive, so the first
run after the upgrade makes one delta request and looks nothing up; the step is safe to
repeat and to kill half-way; a directory the step has not seen is moved by the connector.
"""

import json
import os
import sqlite3

from ingestd_sharepoint import layout
from ingestd.plugin import StepContext
from tests.support.helpers import run_cli


def source_dir(sp):
    return sp.state / "sources" / "docs"


def make_legacy(sp) -> str:
    """Turn the source's state into what ingestd 0.1 wrote: one `sharepoint.sqlite` with
    the delta link, the ids cached under (site, library, Graph) and the scope naming the
    site and library; no index, no marker. Returns the saved delta link."""
    root = source_dir(sp)
    lib = root / layout.LIBRARIES / layout.library_file(sp.drive.id)
    db = sqlite3.connect(lib)
    with db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        scope = {**json.loads(meta["scope"]), "site_url": sp.site.web_url.lower(), "library": "documents"}
        target = {"site_id": sp.site.id, "site_url": sp.site.web_url, "drive_id": sp.drive.id,
                  "drive_name": sp.drive.name, "drive_url": f"{sp.site.web_url}/Shared%20Documents"}
        db.execute("UPDATE meta SET value=? WHERE key='scope'", (json.dumps(scope, sort_keys=True),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('target', ?)", (json.dumps(
            {"key": [sp.site.web_url.lower(), "documents", sp.fake.base_url.lower()], "target": target}),))
    db.close()
    for name in ("sharepoint.sqlite", "sharepoint.sqlite-wal", "sharepoint.sqlite-shm", "SCHEMA.json"):
        (root / name).unlink(missing_ok=True)
    os.replace(lib, root / "sharepoint.sqlite")
    (root / layout.LIBRARIES).rmdir()
    return meta["delta_link"]


def first_sync(sp) -> list[str]:
    ids = [sp.drive.add("a.txt", b"a"), sp.drive.add("Folder/b.txt", b"b")]
    assert sp.run().status == "succeeded"
    sp.close()
    return ids


def test_a_0_1_state_is_split_and_resumes_from_its_delta_link(sp):
    first_sync(sp)
    link = make_legacy(sp)
    check = run_cli("migrate", "--check", "--config", sp.config)
    assert check.returncode == 3, check
    assert "source docs (sharepoint): schema 1 → 2, 1 step(s) pending" in check.stdout
    assert "  2 per-library-state: " in check.stdout

    before = len(sp.fake.records)
    m = sp.run()  # the app migrates before it opens anything

    assert m.status == "succeeded" and m.counters.discovered == 0
    graph = [r for r in sp.fake.records[before:] if r.kind == "graph"]
    assert [r.path for r in graph] == [f"/v1.0/drives/{sp.drive.id}/root/delta"]  # no site or library lookup
    assert graph[0].query["token"] == [link.rpartition("token=")[2]]
    root = source_dir(sp)
    assert json.loads((root / "SCHEMA.json").read_text())["schema"] == 2
    assert "site_url" not in json.loads(sp.meta("scope")) and "library" not in json.loads(sp.meta("scope"))
    assert [row[0] for row in sp.index("libraries")] == [sp.drive.id]
    assert not (root / layout.UNRESOLVED).exists()


def test_the_step_is_safe_to_kill_half_way_and_to_repeat(sp):
    first_sync(sp)
    link = make_legacy(sp)
    root = source_dir(sp)
    layout._move_legacy(root / layout.INDEX, root)  # killed after the move, before the index
    assert not (root / layout.INDEX).exists() and sp.meta("delta_link") == link

    layout.split(StepContext(root=root, log=None))
    layout.split(StepContext(root=root, log=None))  # and once more: nothing changes

    assert [row[0] for row in sp.index("libraries")] == [sp.drive.id]
    assert len(sp.index("lookups")) == 1 and sp.meta("delta_link") == link
    before = len(sp.fake.records)
    assert sp.run().counters.discovered == 0
    assert [r.path for r in sp.fake.records[before:] if r.kind == "graph"] == [
        f"/v1.0/drives/{sp.drive.id}/root/delta"]


def test_a_directory_the_step_has_not_seen_is_split_by_the_connector(sp):
    """A source added by a reload is migrated at the next start; until then the
    connector finds the old layout itself (here: a marker claims the step is done)."""
    first_sync(sp)
    link = make_legacy(sp)
    root = source_dir(sp)
    (root / "SCHEMA.json").write_text(json.dumps({"schema": 2, "kind": "sharepoint"}))

    before = len(sp.fake.records)
    m = sp.run()

    assert m.status == "succeeded" and m.counters.discovered == 0
    graph = [r for r in sp.fake.records[before:] if r.kind == "graph"]
    assert [r.query.get("token") for r in graph] == [[link.rpartition("token=")[2]]]


def test_a_0_1_state_that_never_resolved_its_library_is_kept_aside(sp):
    root = source_dir(sp)
    root.mkdir(parents=True)
    db = sqlite3.connect(root / "sharepoint.sqlite")
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE items (id TEXT);")
    db.close()

    layout.split(StepContext(root=root, log=None))

    assert (root / layout.UNRESOLVED).exists() and sp.index("libraries") == []
    sp.drive.add("a.txt", b"a")
    assert sp.run().counters.ingested == 1
