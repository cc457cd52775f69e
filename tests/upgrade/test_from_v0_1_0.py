"""A state directory made by ingestd 0.1.0 keeps working with this checkout's code.

The fixture (`fixtures/v0.1.0.tar.gz`, made by `make_fixture.py` from the tag) holds
what 0.1.0 wrote and what it answered about it. After the current daemon's first start
on a copy (`upgraded`, see conftest), every job and document reads as 0.1.0 read it,
through the CLI and the HTTP API, and every source resumes from its 0.1.0 cursor: the
start-up S3 syncs fetch no object, the SharePoint sync makes one delta call from the saved
link (moved into the per-library layout by the plugin's own step, looking nothing up), and
the kept drop folder is not read.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import archive
from .installation import FIXTURES, missing
from .kit import all_jobs

CLI_AT_ONCE = 4  # the CLI is a process per document: a few at a time keeps this test short


def _same(expected: dict, actual: dict, what: str) -> list[str]:
    return [f"{what}{line}" for line in missing(expected, actual)]


def test_the_daemon_migrated_the_state_before_using_it(upgraded):
    """0.1.0 wrote no schema marker (version 1); the daemon's start ran every step up to
    this checkout's (v2: the marker, v3: the text catalogue, v4: the change feed), once,
    before READY, and the SharePoint source's own (v2: a state file per library). The manifests keep the `schema`
    0.1.0 wrote (1), and the listings below read them."""
    state = upgraded.inst.state
    marker = json.loads((state / "SCHEMA.json").read_text())
    steps = [(2, "schema-marker"), (3, "text-catalogue"), (4, "change-feed")]
    assert marker["schema"] == 4 and [(h["version"], h["step"]) for h in marker["history"]] == steps
    legal = json.loads((state / "sources" / "legal" / "SCHEMA.json").read_text())
    assert legal["kind"] == "sharepoint" and [h["step"] for h in legal["history"]] == ["per-library-state"]
    events = [e for e in upgraded.daemon.log_events() if e.get("logger") == "ingestd.state"]
    ran = [name for _, name in steps] + ["per-library-state"]
    assert [(e["event"], e.get("step")) for e in events if e["event"].startswith("migration step")] == [
        (event, name) for name in ran for event in ("migration step starting", "migration step applied")], events
    assert [e["changes_replayed"] for e in events if e["event"] == "change feed created"] == [
        sum(len(doc["versions"]) + 1 + bool(doc["deleted_at"]) for doc in upgraded.inst.answers["api"]["documents"].values())]
    assert {json.loads(p.read_text())["schema"] for p in (state / "jobs").glob("*.json")
            if p.name.split("-")[0] < upgraded.since} == {1}


def test_every_document_reads_the_same_over_http(upgraded):
    expected = upgraded.inst.answers["api"]["documents"]
    assert len(expected) >= 20, "the fixture holds fewer documents than it was made with"
    problems = []
    for doc_id, doc in expected.items():
        status, body = upgraded.daemon.get(f"/documents/{doc_id}")
        problems += [f"GET /documents/{doc_id}: {status}"] if status != 200 else _same(doc, body, doc_id)
    assert not problems, "\n".join(problems)


def test_documents_of_every_kind_read_the_same_by_cli(upgraded):
    """The CLI reads documents with the same code as the API, at a process each: every
    kind of document (per source: the most versions, a tombstone, a renamed origin) is
    read here, every document over HTTP above."""
    inst = upgraded.inst
    expected = inst.here({d: inst.answers["cli"]["documents"][d] for d in of_every_kind(inst.answers)})
    with ThreadPoolExecutor(CLI_AT_ONCE) as pool:
        answers = dict(zip(expected, pool.map(lambda d: inst.cli_json("document", d), expected)))
    problems = [line for d, doc in expected.items() for line in _same(doc, answers[d], d)]
    assert not problems, "\n".join(problems)
    for doc in answers.values():  # the blob the current version names is there, with its content
        assert hashlib.sha256(Path(doc["blob_path"]).read_bytes()).hexdigest() == doc["sha256"], doc["doc_id"]


def test_the_fixture_holds_what_it_promises(upgraded):
    """Versions, tombstones, renamed origins, all three job outcomes: if the fixture lost
    one of them, the tests above would prove less than they say."""
    answers = upgraded.inst.answers
    docs = answers["api"]["documents"].values()
    assert {d["source"] for d in docs if d["versions"]} >= {"drop", "keep", "bucket", "legal"}
    assert {d["source"] for d in docs if d["deleted_at"]} >= {"bucket", "legal"}
    assert len(renamed(answers)) >= 4, "renamed and moved SharePoint files: same document, new origin"
    jobs = answers["api"]["jobs_list"]
    assert {j["status"] for j in jobs} == {"succeeded", "partial", "failed"}
    assert {j["trigger"] for j in jobs} >= {"watch", "schedule", "api", "cli"}
    assert len(of_every_kind(answers)) >= 8


def renamed(answers: dict) -> set[str]:
    """Documents whose origin is no longer the one they were first ingested under."""
    first: dict[str, str] = {}
    for job_id in sorted(answers["items"]):
        for line in answers["items"][job_id] or []:
            first.setdefault(line["doc_id"], line["origin_uri"])
    docs = answers["api"]["documents"]
    return {d for d, doc in docs.items() if first.get(d, doc["origin_uri"]) != doc["origin_uri"]}


def of_every_kind(answers: dict) -> set[str]:
    """Per source: the document with the most versions, a tombstone and a renamed one
    (where the source has them)."""
    docs, moved, chosen = answers["api"]["documents"].values(), renamed(answers), set()
    for source in sorted({d["source"] for d in docs}):
        mine = sorted((d for d in docs if d["source"] == source), key=lambda d: (-len(d["versions"]), d["doc_id"]))
        chosen.add(mine[0]["doc_id"])
        chosen |= {d["doc_id"] for d in mine[:1] + [d for d in mine if d["deleted_at"]][:1]
                   + [d for d in mine if d["doc_id"] in moved][:1]}
    return chosen


def test_every_job_is_listed_with_its_counters_by_cli(upgraded):
    inst = upgraded.inst
    listed = {j["job_id"]: j for j in inst.cli_json("jobs", "--limit", "500")}
    expected = inst.answers["cli"]["jobs_list"]
    problems = [line for j in expected for line in
                (_same(j, listed[j["job_id"]], j["job_id"]) if j["job_id"] in listed else [f"{j['job_id']}: not listed"])]
    assert not problems, "\n".join(problems)
    for job_id in (expected[0]["job_id"], expected[-1]["job_id"]):  # `status` reads the same manifests
        assert not _same(inst.answers["cli"]["jobs"][job_id], inst.cli_json("status", job_id), job_id)


def test_every_job_is_listed_with_its_counters_over_http(upgraded):
    inst = upgraded.inst
    listed = {j["job_id"]: j for j in all_jobs(upgraded.daemon)}
    problems = []
    for job in inst.answers["api"]["jobs_list"]:
        job_id = job["job_id"]
        if job_id not in listed:
            problems.append(f"{job_id}: not in GET /jobs")
            continue
        problems += _same(job, listed[job_id], f"GET /jobs {job_id}")
        status, body = upgraded.daemon.get(f"/ingest/{job_id}")
        problems += [f"GET /ingest/{job_id}: {status}"] if status != 200 else _same(
            inst.answers["api"]["jobs"][job_id], body, f"GET /ingest/{job_id}")
    assert not problems, "\n".join(problems)


def test_every_job_keeps_its_items(upgraded):
    """Each job's items file (named in its manifest, which the listings above compare)
    still holds every line 0.1.0 wrote."""
    inst = upgraded.inst
    problems = []
    for job in inst.answers["cli"]["jobs_list"]:
        lines = inst.answers["items"][job["job_id"]]
        path = inst.state / "jobs" / job["items_file"]
        got = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else None
        if lines is None or got is None:
            problems += [] if lines == got else [f"{job['job_id']}: items file {'gone' if got is None else 'appeared'}"]
        else:
            problems += _same(lines, got, f"{job['job_id']} items")
    assert sum(len(v or []) for v in inst.answers["items"].values()) >= 30
    assert not problems, "\n".join(problems)


def test_s3_resumes_from_its_per_key_state(upgraded):
    jobs = [j for s in ("bucket", "late") for j in upgraded.new_jobs(s)]
    assert jobs and all(j["status"] == "succeeded" for j in jobs), jobs
    assert all(j["counters"]["ingested"] == 0 and j["counters"]["deleted"] == 0 for j in jobs), jobs
    requests = upgraded.s3_requests
    assert {r.bucket for r in requests if r.is_list} >= {"docs", "late"}, "the syncs did not list the buckets"
    object_gets = [r.key for r in requests if r.method in ("GET", "HEAD") and r.per_object]
    assert object_gets == [], f"a no-change sync fetched {object_gets}"


def test_sharepoint_resumes_from_its_saved_delta_link(upgraded):
    inst = upgraded.inst
    [job] = upgraded.new_jobs("legal")
    assert job["status"] == "succeeded" and job["counters"]["ingested"] == 0, job
    deltas = [r for r in upgraded.graph_calls if r.path.endswith("/root/delta")]
    saved = inst.saved_delta_links["legal"]
    assert len(deltas) == 1, [(r.path, r.query) for r in deltas]
    assert deltas[0].query.get("token") == [saved.rpartition("token=")[2]], "not the saved delta link"
    assert not [r.path for r in upgraded.graph_calls if "/items/" in r.path], "a listing or a download"
    assert [r.path for r in upgraded.graph_calls if "/root/delta" not in r.path] == [], "a site or library lookup"


def test_kept_files_are_not_read_again(upgraded):
    inst = upgraded.inst
    folder = inst.root / inst.sources["keep"]["path"]
    assert len([p for p in folder.rglob("*") if p.is_file()]) == 3, "the kept originals are missing"
    jobs = upgraded.new_jobs("keep")
    assert upgraded.keep_job in {j["job_id"] for j in jobs}
    # not read (nothing ingested, no bytes), yet counted: they are there, unchanged (issue 15, item 10)
    assert all(j["status"] == "succeeded" and j["counters"]["ingested"] == 0 and j["counters"]["bytes"] == 0
               and j["counters"]["discovered"] == j["counters"]["unchanged"] == 3 for j in jobs), jobs


def test_a_copy_differs_from_the_archive_only_where_documented(installation_of, tmp_path):
    """What `Installation` changes to run a copy here (its docstring lists it) is all it
    changes: the config's service URLs and CA, the Graph origin in the SharePoint meta
    table, the inodes of kept files."""
    pristine = archive.unpack(FIXTURES / "v0.1.0.tar.gz", tmp_path / "pristine")
    inst = installation_of("v0.1.0")
    changed = {str(p.relative_to(pristine)) for p in pristine.rglob("*") if p.is_file()
               and p.read_bytes() != (inst.root / p.relative_to(pristine)).read_bytes()}
    assert changed == {"ingestd.toml", "graph-ca.pem", "state/sources/legal/sharepoint.sqlite",
                       "state/sources/keep/kept.sqlite"}
    assert _rows_changed(pristine, inst.root, "state/sources/legal/sharepoint.sqlite") == {"meta": 3}
    assert _rows_changed(pristine, inst.root, "state/sources/keep/kept.sqlite") == {"kept": 3}


def _rows_changed(a: Path, b: Path, rel: str) -> dict[str, int]:
    """Per table, how many rows of `rel` differ between the two trees."""
    out = {}
    dbs = [sqlite3.connect(root / rel) for root in (a, b)]
    try:
        tables = [r[0] for r in dbs[0].execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            old, new = ({tuple(r) for r in db.execute(f'SELECT * FROM "{table}"')} for db in dbs)
            if old != new:
                out[table] = len(old - new)
    finally:
        for db in dbs:
            db.close()
    return out


def test_the_change_feed_replays_the_whole_store(upgraded):
    """The upgrade backfills the feed: a consumer starting at the first cursor replays
    every version and tombstone 0.1.0 stored, in cursor order, and ends with exactly the
    live set `GET /documents` lists."""
    d = upgraded.daemon
    changes, after = [], None
    while True:
        status, body = d.get("/changes?limit=7" + (f"&after={after}" if after else ""))
        assert status == 200, body
        changes += body["changes"]
        if not body["changes"]:
            break
        after = body["next_after"]
    listed, path = [], "/documents?limit=5"
    while path:
        status, body = d.get(path)
        assert status == 200, body
        listed += body["documents"]
        path = body["links"]["next"]
    replayed: dict[str, tuple] = {}
    for c in changes:
        if c["type"] == "deleted":
            replayed.pop(c["doc_id"], None)
        else:
            replayed[c["doc_id"]] = (c["version"], c["sha256"], c["origin_uri"])
    assert replayed == {doc["doc_id"]: (doc["version"], doc["sha256"], doc["origin_uri"]) for doc in listed}
    expected = upgraded.inst.answers["api"]["documents"]
    assert set(replayed) == {doc_id for doc_id, doc in expected.items() if not doc["deleted_at"]}
    assert {(c["doc_id"], c["version"]) for c in changes if c["type"] != "deleted"} == {
        (doc_id, n) for doc_id, doc in expected.items() for n in range(1, len(doc["versions"]) + 2)}
    assert sorted(c["doc_id"] for c in changes if c["type"] == "deleted") == sorted(
        doc_id for doc_id, doc in expected.items() if doc["deleted_at"])
    cursors = [c["cursor"] for c in changes]
    assert cursors == sorted(set(cursors)) and cursors[0] == "0000000000000001"


def test_documents_from_before_the_upgrade_get_their_text(upgraded):
    """The text catalogue is new in this version: the daemon's first start queues every
    live document an installed extractor reads (each extractor's backlog), and each ends
    extracted or with its typed error; the rest are `not_extracted`, never `pending`."""
    from tests.support.helpers import wait_for

    expected = upgraded.inst.answers["api"]["documents"]

    def states() -> dict[str, str]:
        return {d: upgraded.daemon.get(f"/documents/{d}")[1]["text"]["status"] for d in expected}

    seen: dict[str, str] = {}

    def settled():
        seen.update(states())
        return "pending" not in seen.values()

    try:
        wait_for(settled, timeout=120, interval=0.5, message="every document's text out of pending")
    except AssertionError:
        pending = {d: upgraded.daemon.get(f"/documents/{d}")[1] for d, s in seen.items() if s == "pending"}
        raise AssertionError({d: (b["mime"], b["deleted_at"]) for d, b in pending.items()}) from None
    final = dict(seen)
    assert "extracted" in final.values(), final
    for doc_id, state in final.items():
        try:
            with urllib.request.urlopen(f"{upgraded.daemon.base_url}/documents/{doc_id}/text", timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == {"extracted": 200, "failed": 422, "not_extracted": 404}[state], (doc_id, state)
