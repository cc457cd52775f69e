"""Drop folders in cluster mode, as processes (a private PostgreSQL, moto as the blob
store): the instance a `local` source is pinned to watches its folder as the embedded
daemon does; what is dropped there is served by every instance; a file dropped while the
instance is down is taken at its start; a burst during a job waits for the next job; the
other instance never touches the folder."""

from __future__ import annotations

import hashlib
import threading

from tests.integration.test_api_support import Client
from tests.support.helpers import wait_for

from .kit import BLOBS

SETTLE = 0.3


def drop_cluster(cluster, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cluster.http = True
    cluster.sources = [{"name": "inbox", "kind": "local", "path": str(inbox), "node": "a",
                        "settle_seconds": SETTLE}]
    return inbox


def drop(inbox, name: str, data: bytes) -> None:
    """Written under a hidden name, then renamed in (a writer's usual way)."""
    tmp = inbox / f".{name}.part"
    tmp.write_bytes(data)
    tmp.rename(inbox / name)


def served(client: Client, contents: dict[str, bytes]) -> bool:
    """Every file in `contents` is a document with its bytes' hash, and in the feed."""
    docs = client.get("/documents?limit=500").json["documents"]
    want = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    got = {d["origin_uri"].rsplit("/", 1)[1]: d["sha256"] for d in docs}
    changes = client.get("/changes?limit=500").json["changes"]
    return got == want and {c["origin_uri"].rsplit("/", 1)[1] for c in changes} == set(want)


def hold_uploads(s3) -> tuple[threading.Event, threading.Event]:
    """Blob uploads wait until the first event is set; the second says one is waiting."""
    gate, uploading = threading.Event(), threading.Event()

    def hook(req):
        if req.bucket == BLOBS and req.method == "PUT" and req.per_object and not gate.is_set():
            uploading.set()
            gate.wait(60)

    s3.log.hooks.append(hook)
    return gate, uploading


def one_version_each(cluster, n: int) -> None:
    rows = cluster.conn.execute("SELECT d.origin_uri, count(v.seq) FROM documents d JOIN versions v USING (doc_id) "
                                "GROUP BY d.origin_uri").fetchall()
    assert len(rows) == n and all(count == 1 for _uri, count in rows), rows


def untouched_by(daemon, source: str = "inbox") -> None:
    """The instance logged nothing about the source, and watches nothing."""
    assert not [e for e in daemon.log_events() if e.get("source") == source], "the other instance touched the folder"
    watchers = Client(daemon.base_url).get("/healthz").json
    assert not (watchers.get("checks", {}).get("watchers", {}).get("sources") or {})


def test_a_file_dropped_on_its_node_is_served_by_the_other_instance(cluster, tmp_path):
    inbox = drop_cluster(cluster, tmp_path)
    cluster.start("a", "b")
    b = Client(cluster.instances["b"].base_url)
    files = {"report.txt": b"the quarterly report\n" * 40}
    with open(inbox / "slow.bin", "wb") as writer:  # a writer still at work: never taken half-written
        writer.write(b"the first half, ")
        writer.flush()
        drop(inbox, "report.txt", files["report.txt"])  # arrives after slow.bin, settles no sooner
        wait_for(lambda: served(b, files), timeout=60, message="the dropped file on b's /documents and /changes")
        rows = wait_for(cluster.settled, timeout=60, message="the watch job to finish")
        writer.write(b"then the second")
    assert [(status, trigger, instance) for _j, status, trigger, instance, *_ in rows] == [
        ("succeeded", "watch", "a")]
    job_id = rows[0][0]
    items = b.get(f"/ingest/{job_id}/items").json["items"]
    assert [(i["outcome"], i["origin_uri"].rsplit("/", 1)[1]) for i in items] == [("ingested", "report.txt")]
    assert (tmp_path / "a" / "state" / "processed" / "inbox" / job_id / "report.txt").read_bytes() == \
        files["report.txt"]
    files["slow.bin"] = b"the first half, then the second"
    wait_for(lambda: served(b, files), timeout=60, message="the slow file, once its writer closed it")
    wait_for(lambda: not list(inbox.iterdir()), timeout=30, message="the originals moved away (after = move)")
    one_version_each(cluster, 2)
    untouched_by(cluster.instances["b"])
    assert not (tmp_path / "b" / "state" / "processed").exists()


def test_a_file_dropped_while_its_node_is_down_is_taken_at_its_start(cluster, tmp_path):
    inbox = drop_cluster(cluster, tmp_path)
    cluster.start("a", "b")
    first = {"one.txt": b"dropped while a runs\n"}
    drop(inbox, "one.txt", first["one.txt"])
    b = Client(cluster.instances["b"].base_url)
    wait_for(lambda: served(b, first), timeout=60, message="the first file")
    wait_for(cluster.settled, timeout=60, message="the first job to finish")
    cluster.instances["a"].stop()
    later = {"two.txt": b"dropped while a is down\n", "three.txt": b"and another\n"}
    for name, data in later.items():
        drop(inbox, name, data)
    cluster.instances["a"].start()  # the start-up scan finds what arrived meanwhile
    wait_for(lambda: served(b, {**first, **later}), timeout=60, message="the files dropped while a was down")
    wait_for(cluster.settled, timeout=60, message="the jobs to finish")
    one_version_each(cluster, 3)
    assert {r[3] for r in cluster.jobs()} == {"a"}
    untouched_by(cluster.instances["b"])


def test_a_burst_during_a_job_waits_for_the_next_job(cluster, tmp_path, s3):
    """The first file's job is held inside its blob upload; five more files settle meanwhile
    and are kept by the watcher (one live job per source); released, the first job ends
    and the next one takes all five: none lost, none taken twice."""
    inbox = drop_cluster(cluster, tmp_path)
    gate, uploading = hold_uploads(s3)
    cluster.start("a", "b")
    a = Client(cluster.instances["a"].base_url)
    files = {"first.txt": b"the first file\n"}
    drop(inbox, "first.txt", files["first.txt"])
    assert uploading.wait(60), "the first job never reached its upload"
    burst = {f"burst-{i}.txt": f"burst file {i}\n".encode() for i in range(5)}
    for name, data in burst.items():
        drop(inbox, name, data)

    def held_back():
        inbox_health = a.get("/healthz").json["checks"]["watchers"]["sources"]["inbox"]
        return inbox_health["ready"] == len(burst)

    wait_for(held_back, timeout=60, message="the burst settled and held for the next job")
    live = cluster.conn.execute("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]
    assert live == 1  # the one job the source may have; the burst waits in the watcher
    gate.set()
    b = Client(cluster.instances["b"].base_url)
    wait_for(lambda: served(b, {**files, **burst}), timeout=60, message="every file, the burst included")
    rows = wait_for(cluster.settled, timeout=60, message="the jobs to finish")
    assert [r[1] for r in rows] == ["succeeded", "succeeded"] and {r[2] for r in rows} == {"watch"}
    assert [m["counters"]["ingested"] for *_, m in rows] == [1, 5]
    one_version_each(cluster, 6)
    assert not list(inbox.iterdir())


def test_a_node_killed_during_a_watch_job_loses_no_file(cluster, tmp_path, s3):
    """SIGKILL in the middle of a watch job: the other instance's reaper ends the job
    `interrupted` and queues a recovery job, which waits for the node (the folder is only
    there); restarted, the node takes every file, each once."""
    inbox = drop_cluster(cluster, tmp_path)
    gate, uploading = hold_uploads(s3)
    cluster.start("a", "b")
    files = {f"doc-{i}.txt": f"document {i}\n".encode() for i in range(4)}
    for name, data in files.items():
        drop(inbox, name, data)
    assert uploading.wait(60), "the watch job never reached its upload"
    cluster.instances["a"].kill()
    gate.set()
    rows = wait_for(lambda: (r := cluster.jobs()) and len(r) == 2 and r, timeout=120,
                    message="b's reaper to end a's job and queue a recovery job")
    assert [(r[1], r[2]) for r in rows] == [("failed", "watch"), ("queued", "recovery")]
    assert rows[0][5]["errors"][-1]["code"] == "interrupted"
    cluster.instances["a"].start()
    b = Client(cluster.instances["b"].base_url)
    wait_for(lambda: served(b, files), timeout=60, message="every file, after the node's restart")
    wait_for(cluster.settled, timeout=60, message="the recovery job to finish")
    assert {r[3] for r in cluster.jobs()} == {"a"}
    one_version_each(cluster, len(files))
    wait_for(lambda: not list(inbox.iterdir()), timeout=30, message="the originals moved away")
