"""Incremental sync over real HTTP against moto: first sync, no-op resync, changes,
deletions and the delete-fraction valve, filters, and objects that move under our feet."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time

import pytest

from ingestd_s3 import sync
from ingestd_s3.keys import origin_uri

from tests.support.helpers import wait_for

from .kit import BUCKET, SOURCE

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" + bytes(range(256))


def uri(key: str) -> str:
    return origin_uri(BUCKET, key)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fill(moto, objects: dict[str, bytes]) -> dict[str, str]:
    return {key: moto.put(key, data) for key, data in objects.items()}


def state_rows(env) -> dict[str, tuple]:
    db = sqlite3.connect(env.state / "sources" / SOURCE / "s3-objects.sqlite")
    try:
        return {r[0]: r[1:] for r in db.execute("SELECT key, etag, size, modified, version_id, doc_id FROM objects")}
    finally:
        db.close()


class Gate:
    """A request hook that holds object GETs until `need` of them wait together: a
    connector fetching one object at a time never opens it, and the peak shows it."""

    def __init__(self, need: int, timeout: float = 10.0):
        self.need, self.timeout = need, timeout
        self.cond = threading.Condition()
        self.inside = self.peak = 0
        self.open = False

    def __call__(self, req):
        if req.method != "GET" or not req.per_object:
            return None
        with self.cond:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            if self.inside >= self.need:
                self.open = True
                self.cond.notify_all()
            self.cond.wait_for(lambda: self.open, timeout=self.timeout)
            self.inside -= 1
        return None  # on to moto


def test_first_sync_takes_every_object_once_with_provenance(s3env, moto):
    objects = {f"reports/{i:03d}.txt": f"report {i}\n".encode() for i in range(24)}
    objects |= {"deep/a/b/scan.pdf": PDF, "top.json": b'{"a": 1}\n', "empty.txt": b""}
    etags = fill(moto, objects)
    moto.put("reports/", b"")  # a console-made folder marker: no document, no GET
    gate = Gate(need=4)
    moto.log.hooks.append(gate)

    code, manifest = s3env.ingest_cli()

    assert code == 0 and manifest["status"] == "succeeded", manifest
    c = manifest["counters"]
    assert (c["ingested"], c["failed"], c["skipped"], c["deleted"]) == (len(objects), 0, 0, 0)
    assert c["bytes"] == sum(len(v) for v in objects.values())
    assert moto.log.count("GET", per_object=True) == len(objects)  # exactly one GET each
    assert moto.log.count("HEAD") == 0 and moto.log.count("GET", key="reports/") == 0
    assert gate.peak >= 4, f"downloads were not parallel (peak {gate.peak} GETs in flight)"
    docs = s3env.documents()
    assert set(docs) == {uri(k) for k in objects}
    for key, data in objects.items():
        doc = docs[uri(key)]
        assert doc.sha256 == sha(data) and doc.size == len(data)
        assert open(doc.blob_path, "rb").read() == data
        meta = doc.metadata
        assert meta["key"] == key and meta["bucket"] == BUCKET and meta["etag"] == etags[key]
        assert meta["storage_class"] == "STANDARD" and meta["last_modified"].endswith("Z")
        assert "version_id" in meta and meta["content_type"]
        assert doc.source_modified_at == meta["last_modified"]
    assert docs[uri("deep/a/b/scan.pdf")].mime == "application/pdf"
    assert not (s3env.state / "workspace" / manifest["job_id"]).exists()  # removed after success
    rows = state_rows(s3env)
    assert set(rows) == set(objects)
    assert rows["top.json"][0] == etags["top.json"] and rows["top.json"][1] == len(objects["top.json"])
    assert rows["top.json"][4] == docs[uri("top.json")].doc_id


def test_noop_resync_sends_no_request_per_object(s3env, moto, monkeypatch):
    monkeypatch.setattr(sync, "LIST_PAGE_SIZE", 7)  # several pages from a small bucket
    fill(moto, {f"k/{i:02d}.txt": f"{i}".encode() * 3 for i in range(30)})
    first = s3env.run()
    assert first["counters"]["ingested"] == 30 and moto.log.lists() == 5
    moto.log.clear()

    again = s3env.run()

    assert again["status"] == "succeeded"
    assert again["counters"] == {**again["counters"], "ingested": 0, "failed": 0, "deleted": 0, "discovered": 0}
    assert moto.log.count(per_object=True) == 0, moto.log.summary()
    assert moto.log.lists() == 5
    compared = [line for line in s3env.log_lines() if line.get("event") == "s3 sync compared"][-1]
    assert (compared["listed"], compared["unchanged"], compared["fetched"], compared["pages"]) == (30, 30, 0, 5)


def test_changed_objects_become_new_versions_even_at_the_same_size(s3env, moto):
    fill(moto, {"same.txt": b"aaaa", "grow.txt": b"bbbb", "keep.txt": b"cccc"})
    first = s3env.run()
    assert first["counters"]["ingested"] == 3
    fill(moto, {"same.txt": b"AAAA", "grow.txt": b"bbbbbbbb"})
    moto.log.clear()

    second = s3env.run()

    assert second["status"] == "succeeded" and second["counters"]["ingested"] == 2
    assert moto.log.count("GET", per_object=True) == 2 and moto.log.count(key="keep.txt") == 0
    docs = s3env.documents()
    assert docs[uri("same.txt")].sha256 == sha(b"AAAA")
    assert [v.sha256 for v in docs[uri("same.txt")].versions] == [sha(b"aaaa")]
    assert docs[uri("grow.txt")].size == 8 and docs[uri("keep.txt")].versions == []


def test_an_untouched_object_makes_no_version(s3env, moto):
    fill(moto, {"a.txt": b"same bytes"})
    s3env.run()
    moto.log.clear()
    again = s3env.run()
    assert again["status"] == "succeeded" and again["counters"]["ingested"] == 0
    assert moto.log.count("GET", per_object=True) == 0
    assert s3env.documents()[uri("a.txt")].versions == []


def test_rewriting_identical_bytes_is_unchanged_content_in_a_metadata_version(s3env, moto):
    """History is append-only: the rewrite's new LastModified is a new observation of the same
    bytes (a metadata version), and the version before keeps its own LastModified."""
    fill(moto, {"a.txt": b"same bytes"})
    first = s3env.run()
    before = s3env.documents()[uri("a.txt")].metadata["last_modified"]
    stamp = moto.s3.head_object(Bucket=BUCKET, Key="a.txt")["LastModified"]
    # same ETag; rewrite until S3's one-second LastModified has moved (a condition, not a delay)
    wait_for(lambda: fill(moto, {"a.txt": b"same bytes"})
             and moto.s3.head_object(Bucket=BUCKET, Key="a.txt")["LastModified"] != stamp,
             timeout=30, interval=0.2, message="a LastModified after the first one")
    again = s3env.run()
    assert again["status"] == "succeeded"
    assert (again["counters"]["ingested"], again["counters"]["unchanged"]) == (0, 1)
    doc = s3env.documents()[uri("a.txt")]
    [earlier] = doc.versions
    assert (doc.kind, doc.sha256) == ("metadata", earlier.sha256)
    assert earlier.metadata["last_modified"] == before and earlier.job_id == first["job_id"]
    assert doc.metadata["last_modified"] != before


def test_deleted_objects_become_tombstones_once(s3env, moto):
    fill(moto, {f"d/{i}.txt": f"doc {i}".encode() for i in range(4)})
    s3env.run()
    moto.s3.delete_object(Bucket=BUCKET, Key="d/2.txt")

    gone = s3env.run()

    assert gone["status"] == "succeeded" and gone["counters"]["deleted"] == 1
    assert [i["origin_uri"] for i in s3env.items(gone) if i["outcome"] == "deleted"] == [uri("d/2.txt")]
    docs = s3env.documents()
    assert docs[uri("d/2.txt")].deleted_at and docs[uri("d/2.txt")].deleted_job == gone["job_id"]
    assert docs[uri("d/2.txt")].sha256 == sha(b"doc 2")  # content kept
    assert "d/2.txt" not in state_rows(s3env)
    moto.log.clear()
    quiet = s3env.run()
    assert quiet["counters"]["deleted"] == 0 and moto.log.count(per_object=True) == 0

    moto.put("d/2.txt", b"doc 2")  # back again: the document lives again
    back = s3env.run()
    assert back["counters"]["ingested"] == 1 and s3env.documents()[uri("d/2.txt")].deleted_at is None


def test_delete_fraction_valve_refuses_a_mass_deletion(s3env, moto):
    fill(moto, {f"v/{i}.txt": f"v{i}".encode() for i in range(10)})
    s3env.run()
    for i in range(6):
        moto.s3.delete_object(Bucket=BUCKET, Key=f"v/{i}.txt")
    moto.put("v/9.txt", b"changed")
    moto.log.clear()

    refused = s3env.run()

    assert refused["status"] == "failed" and moto.log.count(per_object=True) == 0
    assert [e["code"] for e in refused["errors"]] == ["delete_limit"]
    assert "6 of 10" in refused["errors"][0]["message"] and "max_delete_fraction" in refused["errors"][0]["message"]
    assert refused["counters"]["deleted"] == 0
    assert not any(d.deleted_at for d in s3env.documents().values())
    assert len(state_rows(s3env)) == 10  # nothing forgotten: the next run refuses again

    s3env.write(on_delete="ignore")
    ignored = s3env.run()
    assert ignored["status"] == "succeeded" and ignored["counters"]["deleted"] == 0
    assert ignored["counters"]["ingested"] == 1  # the change is taken; the deletions left alone

    s3env.write(max_delete_fraction=0.6)
    allowed = s3env.run()
    assert allowed["status"] == "succeeded" and allowed["counters"]["deleted"] == 6
    assert len(state_rows(s3env)) == 4


def test_a_wrong_prefix_trips_the_valve_instead_of_tombstoning(s3env, moto):
    fill(moto, {f"right/{i}.txt": b"x%d" % i for i in range(3)} | {"wrong/only.txt": b"w"})
    s3env.write(prefix="right/")
    s3env.run()
    s3env.write(prefix="wrong/")
    moto.log.clear()
    result = s3env.run()
    assert result["status"] == "failed" and result["errors"][0]["code"] == "delete_limit"
    assert result["counters"]["ingested"] == 0 and moto.log.count(per_object=True) == 0  # a refused run does nothing
    assert not any(d.deleted_at for d in s3env.documents().values())


def test_include_exclude_prefix_and_size_limit(s3env, moto):
    fill(moto, {"in/a.txt": b"a", "in/sub/b.txt": b"b", "in/c.csv": b"c", "in/tmp/d.txt": b"d",
                "in/big.txt": b"x" * 100, "out/e.txt": b"e"})
    s3env.write(prefix="in/", include=["**/*.txt"], exclude=["tmp/**"], max_object_size=50)

    result = s3env.run()

    assert result["status"] == "succeeded"
    assert set(s3env.documents()) == {uri("in/a.txt"), uri("in/sub/b.txt")}
    assert [(e["code"], e["item"]) for e in result["errors"]] == [("too_large", uri("in/big.txt"))]
    assert result["counters"]["skipped"] == 1
    fetched = {r.key for r in moto.log.requests if r.method == "GET" and r.per_object}
    assert fetched == {"in/a.txt", "in/sub/b.txt"}  # nothing filtered or too large was fetched


def test_min_age_defers_young_objects_to_a_later_run(s3env, moto):
    fill(moto, {"fresh/a.txt": b"a", "fresh/b.txt": b"b"})
    s3env.write(min_age_seconds="1h")
    deferred = s3env.run()
    assert deferred["status"] == "succeeded" and deferred["counters"]["ingested"] == 0
    assert moto.log.count("GET", per_object=True) == 0
    s3env.write(min_age_seconds=0)
    taken = s3env.run()
    assert taken["counters"]["ingested"] == 2


def test_an_object_replaced_between_list_and_get_is_taken_as_fetched(s3env, moto):
    fill(moto, {"moving.txt": b"listed version", "still.txt": b"still"})
    replaced = {}

    def replace_once(req):
        if req.method == "GET" and req.key == "moving.txt" and not replaced:
            replaced["etag"] = moto.put("moving.txt", b"the newer version, longer")
        return None

    moto.log.hooks.append(replace_once)
    first = s3env.run()

    assert first["status"] == "succeeded" and first["counters"]["ingested"] == 2
    doc = s3env.documents()[uri("moving.txt")]
    assert doc.sha256 == sha(b"the newer version, longer")  # the bytes, the ETag and the
    assert doc.metadata["etag"] == replaced["etag"]  # recorded token all name one version
    assert state_rows(s3env)["moving.txt"][:2] == (replaced["etag"], len(b"the newer version, longer"))
    moto.log.clear()
    second = s3env.run()
    assert second["counters"]["ingested"] == 0 and moto.log.count(per_object=True) == 0


def test_an_object_deleted_between_list_and_get_is_no_failure(s3env, moto):
    fill(moto, {"vanishing.txt": b"soon gone", "stays.txt": b"stays"})

    def delete_first(req):
        if req.method == "GET" and req.key == "vanishing.txt":
            moto.log.hooks.clear()
            moto.s3.delete_object(Bucket=BUCKET, Key="vanishing.txt")
        return None

    moto.log.hooks.append(delete_first)
    result = s3env.run()
    assert result["status"] == "succeeded" and result["counters"]["ingested"] == 1
    assert set(s3env.documents()) == {uri("stays.txt")}
    assert set(state_rows(s3env)) == {"stays.txt"}


def test_stop_ends_the_job_promptly_and_the_next_run_completes(s3env, moto):
    keys = [f"s/{i:02d}.txt" for i in range(40)]
    fill(moto, {k: k.encode() for k in keys})
    stop = threading.Event()

    def stop_on_first_get(req):
        if req.method == "GET" and req.per_object:
            stop.set()
        return None

    moto.log.hooks.append(stop_on_first_get)
    s3env.write(concurrency=2)
    interrupted = s3env.run(stop=stop)
    assert interrupted["status"] == "failed" and interrupted["errors"][-1]["code"] == "interrupted"
    assert moto.log.count("GET", per_object=True) < len(keys)
    moto.log.hooks.clear()
    rest = s3env.run()
    assert rest["status"] == "succeeded"
    assert set(s3env.documents()) == {uri(k) for k in keys}


class Cohorts:
    """Holds object GETs in cohorts: once `size` wait together, they are held `grace`
    longer (time for any extra download thread to show up in `peak`), then released."""

    def __init__(self, size: int, grace: float = 0.2, timeout: float = 10.0):
        self.size, self.grace, self.timeout = size, grace, timeout
        self.cond = threading.Condition()
        self.inside = self.peak = 0
        self.release_at: float | None = None

    def __call__(self, req):
        if req.method != "GET" or not req.per_object:
            return None
        with self.cond:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            if self.inside >= self.size and self.release_at is None:
                self.release_at = time.monotonic() + self.grace
                self.cond.notify_all()
            deadline = time.monotonic() + self.timeout
            while self.release_at is None or time.monotonic() < self.release_at:
                left = (self.release_at or deadline) - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            self.inside -= 1
            if self.inside == 0:
                self.release_at = None  # the next cohort forms from scratch
        return None


@pytest.mark.parametrize("workers", [1, 3])
def test_concurrency_is_honoured(s3env, moto, workers):
    fill(moto, {f"c/{i}.txt": b"%d" % i for i in range(6)})  # whole cohorts for 1 and 3
    gate = Cohorts(size=workers)
    moto.log.hooks.append(gate)
    s3env.write(concurrency=workers)
    result = s3env.run()
    assert result["counters"]["ingested"] == 6
    assert gate.peak == workers
