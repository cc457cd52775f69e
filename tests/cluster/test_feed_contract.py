"""Issue 17's hand-off contract held by both backends: the same assertions against an
embedded daemon and a 2-instance cluster (PostgreSQL, moto as the blob store), over real
HTTP. In the cluster, what one instance's job wrote is read from the other: the listing,
the content streamed from S3 (ETag, Range, 304), the change feed (cursors, paging, 410s,
deletions) and a long-poll woken by a commit made on the other instance. Then concurrent
writers on two instances with a consumer following `/changes` that must see every change
once, in order."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from ingestd.api.models import DocumentSummary
from ingestd.store.feed import FIELDS
from tests.integration.test_api_support import Client, trigger, wait_job
from tests.integration.test_plugins import plugin_env
from tests.support.helpers import wait_for
from tests.support.procs import Daemon

from .kit import DOCS, instance_config, s3_source, write_registry
from .nodes import TTL, put_all

OBJECTS = {"a/one.txt": b"the first document\n", "a/two.txt": b"the second, longer document\n" * 3,
           "b/three.txt": b"three\n", "b/four.txt": b"four: " + bytes(range(32, 127)),
           "c/five.txt": b"the fifth\n" * 50}
SUMMARY = set(DocumentSummary.model_fields)


class Embedded:
    """One embedded daemon (no [cluster] table) on the same bucket."""

    def __init__(self, root, moto):
        registry = write_registry(root / "credentials.json", "unused")
        self.home, self.moto, self.registry = root / "embedded", moto, registry
        self.start()

    def start(self, env: dict | None = None, **daemon) -> None:
        config = instance_config(self.home, "e", database_url="", s3_url=self.moto.url, registry=self.registry, ttl=TTL,
                                 http=True, cluster=False, daemon=daemon)
        self.daemon = Daemon(config, self.home / "state", self.home, env=env).start()
        self.writer = self.reader = Client(self.daemon.base_url)

    def restart(self, env: dict | None = None, **daemon) -> None:
        """Stopped, then started with these [daemon] keys (and environment)."""
        assert self.daemon.stop() == 0
        closed(self.daemon)
        self.start(env, **daemon)

    def pid_of(self, job_id: str) -> int:
        """The process that ran the job."""
        return self.daemon.proc.pid

    def stop(self) -> None:
        self.daemon.stop()
        self.daemon.notify.close()


def closed(daemon: Daemon) -> None:
    """A stopped daemon's notify socket closed and removed: a new one binds the same path."""
    daemon.notify.close()
    os.unlink(daemon.notify.path)


class TwoInstances:
    """Instances a and b: jobs are asked for on a, everything is read from b."""

    def __init__(self, cluster):
        self.cluster = cluster
        cluster.http = True
        self.start()

    def start(self) -> None:
        self.cluster.start("a", "b")
        self.writer = Client(self.cluster.instances["a"].base_url)
        self.reader = Client(self.cluster.instances["b"].base_url)

    def restart(self, env: dict | None = None, **daemon) -> None:
        """Both stopped, then started with these [daemon] keys (and environment)."""
        self.cluster.stop_instances()
        for d in self.cluster.instances.values():
            closed(d)
        self.cluster.daemon, self.cluster.env = daemon, env or {}
        self.start()

    def pid_of(self, job_id: str) -> int:
        """The process of the instance that ran the job."""
        name = self.cluster.conn.execute("SELECT instance_id FROM jobs WHERE job_id = %s", (job_id,)).fetchone()[0]
        return self.cluster.instances[name].proc.pid

    def stop(self) -> None:
        pass  # the cluster fixture stops its instances


@pytest.fixture(params=["embedded", "cluster"])
def backend(request, tmp_path, s3):
    if request.param == "embedded":
        s3.s3.create_bucket(Bucket=DOCS)
        put_all(s3, OBJECTS)
        b = Embedded(tmp_path, s3)
    else:
        cluster = request.getfixturevalue("cluster")  # creates the source bucket
        put_all(s3, OBJECTS)
        b = TwoInstances(cluster)
    b.moto = s3
    wait_for(lambda: settled(b.writer), timeout=120, message="the first scheduled job to finish")
    yield b
    b.stop()


def settled(client: Client) -> bool:
    jobs = client.get("/jobs?source=bucket").json["jobs"]
    return bool(jobs) and all(j["status"] in ("succeeded", "partial", "failed") for j in jobs)


def held(client: Client) -> int:
    """Long-polls the instance holds now (its metrics)."""
    for line in client.get("/metrics").data.decode().splitlines():
        if line.startswith("ingestd_http_requests_held "):
            return int(float(line.split()[1]))
    raise AssertionError("no ingestd_http_requests_held gauge")


def run_job(b) -> dict:
    return wait_job(b.writer, trigger(b.writer, "bucket", timeout=60).json["job_id"], timeout=120)


def follow(client: Client, after: str | None = None, limit: int = 500) -> tuple[list[dict], str]:
    """Every change after `after`, page by page; (changes, the last next_after)."""
    got = []
    while True:
        query = f"/changes?limit={limit}" + (f"&after={after}" if after else "")
        page = client.get(query).json
        got += page["changes"]
        assert page["next_after"] >= (after or "")
        if not page["changes"]:
            return got, page["next_after"]
        after = page["next_after"]


def listing(client: Client, query: str = "limit=2") -> tuple[list[dict], set[str]]:
    """Every document, following links.next; (documents, the next_after of each page)."""
    docs, cursors, path = [], set(), f"/documents?{query}"
    while path:
        page = client.get(path).json
        docs += page["documents"]
        cursors.add(page["next_after"])
        path = page["links"]["next"]
    return docs, cursors


def test_listing_content_and_feed(backend):
    r = backend.reader
    changes, head = follow(r)
    assert [c["type"] for c in changes] == ["stored"] * len(OBJECTS)
    assert [c["cursor"] for c in changes] == [str(n).zfill(16) for n in range(1, len(OBJECTS) + 1)]
    assert all(tuple(c) == FIELDS for c in changes), changes[0]
    assert head == changes[-1]["cursor"]
    by_uri = {c["origin_uri"]: c for c in changes}
    assert {u: c["sha256"] for u, c in by_uri.items()} == {
        f"s3://{DOCS}/{k}": hashlib.sha256(v).hexdigest() for k, v in OBJECTS.items()}
    assert follow(r, limit=2)[0] == changes  # paging gives the same changes
    nothing = r.get(f"/changes?after={head}").json
    assert nothing == {"changes": [], "next_after": head}
    r.get("/changes?after=12").error(400, "invalid_query")
    expired = r.get("/changes?after=" + "9" * 16).error(410, "cursor_expired")
    assert expired["resync"] == "/documents"

    docs, cursors = listing(r)
    assert cursors == {head}  # every page carries the feed cursor taken when the listing started
    assert [d["doc_id"] for d in docs] == sorted(by_uri[d["origin_uri"]]["doc_id"] for d in docs)
    assert len(docs) == len(OBJECTS) and all(set(d) == SUMMARY for d in docs), docs[0]
    assert {(d["version"], d["kind"], d["deleted_at"]) for d in docs} == {(1, "content", None)}
    one = r.get(f"/documents/{docs[0]['doc_id']}").json
    assert (one["version"], one["kind"], one["versions"]) == (1, "content", [])

    for doc in docs:
        data = OBJECTS[doc["origin_uri"].removeprefix(f"s3://{DOCS}/")]
        path = f"/documents/{doc['doc_id']}/content"
        got = r.get(path)
        assert (got.status, got.data) == (200, data)
        assert got.headers["ETag"] == f'"{doc["sha256"]}"' and got.headers["Content-Length"] == str(len(data))
        assert got.headers["Content-Type"] == doc["mime"]
        assert doc["origin_uri"].rsplit("/", 1)[1] in got.headers["Content-Disposition"]
        assert r.get(path, headers={"If-None-Match": got.headers["ETag"]}).status == 304
        part = r.get(path, headers={"Range": "bytes=2-5"})
        assert (part.status, part.data, part.headers["Content-Range"]) == (206, data[2:6], f"bytes 2-5/{len(data)}")
        tail = r.get(path, headers={"Range": "bytes=-3"})
        assert (tail.status, tail.data) == (206, data[-3:])
        r.get(path, headers={"Range": f"bytes={len(data) + 10}-"}).error(416)
        assert r.get(path + "?version=1").data == data
        r.get(path + "?version=2").error(404, "not_found")
    r.get("/documents/" + "0" * 32 + "/content").error(404, "not_found")
    r.get("/documents/" + "0" * 32).error(404, "not_found")


def test_deletions_updates_and_a_long_poll_woken_by_a_commit(backend):
    r, moto = backend.reader, backend.moto
    before, head = follow(r)
    answer = {}

    def long_poll():
        client = Client(f"http://{r.host}:{r.port}", timeout=60)
        answer["page"] = client.get(f"/changes?after={head}&wait=30").json
        client.close()

    poll = threading.Thread(target=long_poll)
    poll.start()
    wait_for(lambda: held(r) == 1, timeout=30, message="the long-poll to be held")  # before the commit
    moto.s3.delete_object(Bucket=DOCS, Key="a/one.txt")
    moto.put("b/three.txt", b"three, rewritten\n", bucket=DOCS)
    started = time.monotonic()
    assert run_job(backend)["status"] == "succeeded"
    poll.join(60)
    assert answer["page"]["changes"], "the long-poll ended empty: it was not woken by the commit"
    assert time.monotonic() - started < 30  # answered at the commit, not at the end of its wait

    after, _ = follow(r, head)
    assert answer["page"]["changes"][0] == after[0]
    kinds = {(c["type"], c["origin_uri"].rsplit("/", 1)[1]) for c in after}
    assert kinds == {("deleted", "one.txt"), ("updated", "three.txt")}
    assert [c["cursor"] for c in before + after] == sorted(c["cursor"] for c in before + after)
    gone = next(c for c in after if c["type"] == "deleted")
    r.get(f"/documents/{gone['doc_id']}/content").error(410, "deleted")
    assert r.get(f"/documents/{gone['doc_id']}/content?version=1").data == OBJECTS["a/one.txt"]
    updated = next(c for c in after if c["type"] == "updated")
    assert updated["version"] == 2
    assert r.get(f"/documents/{updated['doc_id']}/content").data == b"three, rewritten\n"
    assert r.get(f"/documents/{updated['doc_id']}/content?version=1").data == b"three\n"

    live, _ = listing(r)
    everything, _ = listing(r, "limit=2&include_deleted=true")
    assert gone["doc_id"] not in {d["doc_id"] for d in live}
    assert {d["doc_id"]: d["deleted_at"] is not None for d in everything}[gone["doc_id"]]
    replayed: dict[str, int] = {}  # the feed replayed from the start reproduces the live set
    for c in before + after:
        if c["type"] == "deleted":
            replayed.pop(c["doc_id"], None)
        else:
            replayed[c["doc_id"]] = c["version"]
    assert replayed == {d["doc_id"]: d["version"] for d in live}


def test_concurrent_writers_on_two_instances_and_a_follower_that_misses_nothing(cluster, s3):
    """Two sources pinned to two instances commit at once; a consumer follows `/changes` on
    b in small pages, long-polling: it sees every change exactly once, in cursor order,
    with no gap, ending with the same changes the database holds."""
    s3.s3.create_bucket(Bucket="docs2")
    many = {f"x/{i:04d}.txt": f"object {i}\n".encode() * 3 for i in range(150)}
    put_all(s3, many)
    for key, body in many.items():
        s3.put(key, body + b"2", bucket="docs2")
    cluster.http = True
    cluster.sources = [s3_source("bucket", DOCS, s3.url, node="a"), s3_source("other", "docs2", s3.url, node="b")]
    seen, stop = [], threading.Event()

    def follower(base):
        client, after = Client(base, timeout=60), None
        while not stop.is_set() or after != head():
            page = client.get("/changes?limit=7&wait=2" + (f"&after={after}" if after else "")).json
            seen.extend(c["cursor"] for c in page["changes"])
            after = page["next_after"]
        client.close()

    def head() -> str:
        return str(cluster.conn.execute("SELECT last FROM feed").fetchone()[0]).zfill(16)

    both = threading.Event()  # object reads wait until both jobs run: their commits interleave

    def gate(req):
        if req.bucket in (DOCS, "docs2") and req.method == "GET" and req.per_object:
            both.wait(60)
            time.sleep(0.01)

    s3.log.hooks.append(gate)
    cluster.start("a", "b")  # both sources are due at start: their jobs run at once, one per instance
    wait_for(lambda: cluster.conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()[0] == 2,
             timeout=60, message="both jobs to run")
    both.set()
    reader = threading.Thread(target=follower, args=(cluster.instances["b"].base_url,))
    reader.start()
    rows = wait_for(lambda: (r := cluster.settled()) and len(r) == 2 and r, timeout=180,
                    message="both first jobs to finish")
    stop.set()
    reader.join(120)
    assert not reader.is_alive()
    assert {(r[3], r[1]) for r in rows} == {("a", "succeeded"), ("b", "succeeded")}
    total = cluster.conn.execute("SELECT count(*) FROM changes").fetchone()[0]
    assert total == 300
    assert seen == [str(n).zfill(16) for n in range(1, total + 1)]
    sources = [s for (s,) in cluster.conn.execute("SELECT source FROM changes ORDER BY cursor").fetchall()]
    assert sources != sorted(sources), "the two jobs' commits did not interleave: nothing concurrent was tested"


def test_retention_expires_old_cursors_and_listing_then_following_resyncs(backend):
    """`daemon.change_retention`, applied at start (embedded: its housekeeping; cluster: by
    one instance, under an advisory lock): a consumer that was away longer gets 410
    `cursor_expired` naming the oldest cursor kept, and resyncs by listing, then following
    from the listing's cursor; the counter goes on."""
    seen, head = follow(backend.reader)
    assert len(seen) == len(OBJECTS)
    backend.restart(change_retention="1ms")
    r = backend.reader
    gone = wait_for(lambda: (a := r.get(f"/changes?after={seen[0]['cursor']}")).status == 410 and a.json, timeout=60,
                    message="the changes made before the restart pruned")
    assert gone["error"] == "cursor_expired" and gone["oldest"] == head and gone["resync"] == "/documents"
    r.get("/changes").error(410, "cursor_expired")  # from the first change: gone too
    assert r.get(f"/changes?after={head}").json == {"changes": [], "next_after": head}  # the head is still good
    docs, cursors = listing(r)
    assert len(docs) == len(OBJECTS) and cursors == {head}
    backend.moto.put("d/six.txt", b"six\n", bucket=DOCS)
    assert run_job(backend)["status"] == "succeeded"
    after, _ = follow(r, head)
    assert [c["cursor"] for c in after] == [str(len(OBJECTS) + 1).zfill(16)], "the counter went on"


def test_plugin_hooks_follow_the_feed_after_the_commit(backend, tmp_path):
    """`document_stored`, `document_deleted` and `job_finished` from a plugin installed by
    entry point: called by the process that committed the job, after the commit, with the
    feed's cursor, in feed order, the job's end last; hooks that raise never break the job."""
    _, head = follow(backend.reader)
    calls_file = tmp_path / "hooks.jsonl"
    env = {**plugin_env(tmp_path, {"feedhooks": "ingestd_feedhooks"}), "INGESTD_TEST_FEEDHOOKS_SEEN": str(calls_file),
           "INGESTD_TEST_FEEDHOOKS_RAISE": "1"}
    backend.restart(env)
    wait_for(lambda: settled(backend.writer), timeout=120, message="any job at start to finish")
    backend.moto.s3.delete_object(Bucket=DOCS, Key="a/one.txt")
    backend.moto.put("b/three.txt", b"three, rewritten\n", bucket=DOCS)
    backend.moto.put("d/six.txt", b"six\n", bucket=DOCS)
    job = run_job(backend)
    assert job["status"] == "succeeded"  # every hook call raised: the job is untouched
    after, _ = follow(backend.reader, head)
    assert sorted(c["type"] for c in after) == ["deleted", "stored", "updated"]

    def calls() -> list[dict]:
        lines = calls_file.read_text().splitlines() if calls_file.exists() else []
        return [json.loads(line) for line in lines]

    wait_for(lambda: any(c["hook"] == "job_finished" and c["job_id"] == job["job_id"] for c in calls()), timeout=60,
             message="job_finished called")
    mine = [c for c in calls() if c["job_id"] == job["job_id"]]
    *documents, end = mine
    assert [(c["hook"], c["cursor"], c["doc_id"]) for c in documents] == [
        ("document_deleted" if c["type"] == "deleted" else "document_stored", c["cursor"], c["doc_id"]) for c in after]
    for call, change in zip(documents, after):
        assert call["sha256"] == change["sha256"] and call["source"] == "bucket"
    gone = next(c for c in documents if c["hook"] == "document_deleted")
    assert (gone["type"], gone["version"]) == ("deleted", 1)
    assert (end["hook"], end["status"], end["ingested"], end["deleted"]) == ("job_finished", "succeeded", 2, 1)
    assert {c["pid"] for c in mine} == {backend.pid_of(job["job_id"])}  # the instance that committed
