"""Cluster mode as processes: two `ingestd run` instances on one private PostgreSQL and
moto's S3 as the blob store. A job runs on exactly one instance; a SIGKILLed holder's
lease expires and the other instance takes its work over; a holder stopped past its
lease (SIGSTOP) is fenced out and writes nothing when it wakes (SIGCONT)."""

from __future__ import annotations

import hashlib
import json
import signal
import time
import urllib.error
import urllib.request

import pytest

from tests.support.helpers import wait_for

from .kit import DOCS
from .nodes import TTL, N, contents, put_all
from .proxy import Proxy
from .race import api_race


def slow_gets(moto, delay: list[float]) -> None:
    """Latency on the source bucket's object GETs (a slow remote), `delay[0]` seconds each."""

    def hook(req):
        if req.bucket == DOCS and req.method == "GET" and req.per_object and delay[0]:
            time.sleep(delay[0])
        return None

    moto.log.hooks.append(hook)


def test_two_instances_run_each_job_exactly_once(cluster):
    objects = contents()
    put_all(cluster.moto, objects)
    cluster.start("a", "b")
    rows = wait_for(cluster.settled, timeout=120, message="the scheduled job to finish")
    assert [(status, trigger) for _j, status, trigger, *_ in rows] == [("succeeded", "schedule")]  # fired once
    cluster.check_catalogue(objects)
    ran = [name for name, d in cluster.instances.items() if any(e.get("event") == "job started"
                                                                 for e in d.log_events())]
    assert ran == [rows[0][3]]  # exactly the instance the database says
    status = json.loads(cluster.cli("cluster", "status", "--json").stdout)
    assert sorted(i["instance_id"] for i in status["instances"]) == ["a", "b"]
    assert [(s["name"], s["fence"], s["holder"]) for s in status["sources"]] == [("bucket", 1, None)]
    assert status["last_cursor"] == N and status["queued"] == 0
    # the instance that ran it leaves; a job asked for now runs on the other, which starts
    # from the first job's cursor (the shared snapshot) and fetches nothing again
    cluster.instances[ran[0]].stop()
    other = next(n for n in cluster.instances if n != ran[0])
    cluster.moto.log.clear()
    asked = cluster.cli("cluster", "ingest", "bucket")
    job_id = asked.stdout.strip()
    assert asked.returncode == 0 and len(job_id) > 10
    wait_for(cluster.settled, timeout=120, message="the asked-for job to finish")
    done = json.loads(cluster.cli("cluster", "job", job_id).stdout)
    assert done["status"] == "succeeded" and done["counters"]["ingested"] == 0
    assert cluster.jobs()[-1][3] == other
    assert not [r.key for r in cluster.moto.log.requests if r.bucket == DOCS and r.method == "GET" and r.per_object]
    assert cluster.versions() == N  # nothing written twice
    assert cluster.conn.execute("SELECT state_fence FROM sources").fetchone()[0] == 2  # the cursor is job 2's
    for d in cluster.instances.values():  # the database password is a secret: never logged
        assert cluster.pg.password not in d.log_text()


def mid_job(cluster):
    """Two instances, one of them holding a slow job that has committed some of its work:
    (the objects, the GET delay to lift, (holder, job id, fence))."""
    objects = contents()
    put_all(cluster.moto, objects)
    delay = [1.0]  # slow enough that the first group commit (after 2 s) holds only part of the job
    slow_gets(cluster.moto, delay)
    cluster.start("a", "b")
    held = wait_for(cluster.holder, timeout=60, message="an instance to claim the job")
    wait_for(lambda: cluster.versions(held[1]) > 0, timeout=60, message="the holder's first commit")
    delay[0] = 3.0  # and the rest slower still: the job stays live until the test lifts the delay
    return objects, delay, held


def test_a_killed_holders_job_is_taken_over(cluster):
    objects, delay, (holder, job_id, fence) = mid_job(cluster)
    busy = cluster.cli("cluster", "ingest", "bucket", name="b")  # one live job per source, cluster-wide
    assert busy.returncode == 75 and job_id in busy.stdout
    cluster.instances[holder].kill()
    delay[0] = 0
    survivor = next(n for n in cluster.instances if n != holder)
    rows = wait_for(cluster.settled, timeout=4 * TTL + 60, message="the recovery job to finish")
    by_id = {r[0]: r for r in rows}
    killed = by_id[job_id][5]
    assert by_id[job_id][1] == "failed" and [e["code"] for e in killed["errors"]] == ["interrupted"]
    (recovery,) = [r for r in rows if r[2] == "recovery"]
    assert recovery[1] == "succeeded" and recovery[3] == survivor and recovery[4] > fence
    cluster.check_catalogue(objects)  # what the dead holder committed stands, once; the rest came after


def test_a_stalled_holder_is_fenced_out_and_writes_nothing_when_it_wakes(cluster):
    objects, delay, (holder, job_id, fence) = mid_job(cluster)
    stalled = cluster.instances[holder]
    stalled.signal(signal.SIGSTOP)
    survivor = next(n for n in cluster.instances if n != holder)
    taken = wait_for(lambda: (h := cluster.holder()) and h[0] == survivor and h, timeout=4 * TTL + 60,
                     message="the other instance to take the source over")
    assert taken[2] > fence + 1  # the reaper's bump, then the claim's
    before = cluster.versions(job_id)
    stalled.signal(signal.SIGCONT)
    delay[0] = 0
    wait_for(lambda: any(e.get("event") == "job stopped: lease lost" for e in stalled.log_events()), timeout=60,
             message="the woken holder to notice its lost lease")
    rows = wait_for(cluster.settled, timeout=120, message="the recovery job to finish")
    assert cluster.versions(job_id) == before  # no late write
    by_id = {r[0]: r for r in rows}
    assert by_id[job_id][1] == "failed"
    (recovery,) = [r for r in rows if r[2] == "recovery"]
    assert recovery[1] == "succeeded"
    fences = [r[4] for r in rows]
    assert fences == sorted(set(fences))
    # the S3 cursor saved is the new holder's, not the woken one's
    assert cluster.conn.execute("SELECT state_fence FROM sources").fetchone()[0] == recovery[4]
    cluster.check_catalogue(objects)


def test_a_partitioned_holder_stops_and_its_late_writes_never_land(cluster):
    """Instance a reaches the database through a proxy that starts swallowing every byte
    (no error, no reset: what a partition looks like). It must stop its job by itself; b
    takes the source over after the ttl; when the proxy heals, nothing a sent lands."""
    objects = contents()
    put_all(cluster.moto, objects)
    delay = [1.0]  # as mid_job: the first commit holds part of the job, the rest waits
    slow_gets(cluster.moto, delay)
    proxy = Proxy(cluster.pg.server.host, cluster.pg.server.port)
    try:
        cluster.urls["a"] = f"postgresql://{cluster.pg.server.user}@127.0.0.1:{proxy.port}/{cluster.pg.name}"
        cluster.start("a")
        holder, job_id, fence = wait_for(cluster.holder, timeout=60, message="a to claim the job")
        assert holder == "a"
        wait_for(lambda: cluster.versions(job_id) > 0, timeout=60, message="a's first commit")
        delay[0] = 3.0
        cluster.start("b")
        proxy.blackhole()
        a = cluster.instances["a"]
        wait_for(lambda: any(e.get("event") == "lease lost: stopping the job" for e in a.log_events()),
                 timeout=4 * TTL + 30, message="a to give its lease up")
        taken = wait_for(lambda: (h := cluster.holder()) and h[0] == "b" and h, timeout=4 * TTL + 60,
                         message="b to take the source over")
        assert taken[2] > fence
        before = cluster.versions(job_id)
        proxy.heal()
        delay[0] = 0
        rows = wait_for(cluster.settled, timeout=120, message="the recovery job to finish")
        assert cluster.versions(job_id) == before  # none of a's late writes landed
        by_id = {r[0]: r for r in rows}
        assert by_id[job_id][1] == "failed"
        assert [(r[1], r[3]) for r in rows if r[2] == "recovery"] == [("succeeded", "b")]
        cluster.check_catalogue(objects)
        assert a.proc.poll() is None  # the partition cost a its job, not its life
    finally:
        proxy.heal()
        cluster.stop_instances()
        proxy.close()


def test_every_instance_serves_the_api_and_one_ingest_wins_each_round(cluster):
    """Concurrent `POST /ingest` for one source on all three instances: one 202 per round,
    the others 409 `busy` naming the job that won; `/jobs` is the same everywhere."""
    objects = contents(10)
    put_all(cluster.moto, objects)
    cluster.http = True
    cluster.start("a", "b", "c")
    wait_for(cluster.settled, timeout=120, message="the scheduled job to finish")
    bases = [d.base_url for d in cluster.instances.values()]
    race = api_race(cluster, "bucket", DOCS, 5)
    assert race["accepted"] == 5 and race["refused_busy"] == 10 and race["jobs_listed_identically"] == 6
    doc, uri = cluster.conn.execute("SELECT doc_id, origin_uri FROM documents LIMIT 1").fetchone()
    served = [json.loads(urllib.request.urlopen(f"{b}/documents/{doc}", timeout=30).read()) for b in bases]
    assert all(s == served[0] for s in served)
    assert served[0]["sha256"] == hashlib.sha256(objects[uri.removeprefix(f"s3://{DOCS}/")]).hexdigest()
    for path in ("/documents", f"/documents/{doc}/content", "/changes"):  # the same answer everywhere
        answers = [urllib.request.urlopen(b + path, timeout=30).read() for b in bases]
        assert all(a == answers[0] for a in answers), path
    assert answers[0].startswith(b'{"changes":[{"cursor":"0000000000000001"')
    # no sinks in cluster mode yet (the config refuses them): none listed, a reset names none
    assert json.loads(urllib.request.urlopen(bases[0] + "/sinks", timeout=30).read()) == {"sinks": []}
    reset = urllib.request.Request(bases[0] + "/sinks/hook/reset", data=b'{"to": "0000000000000000"}',
                                   headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(reset, timeout=30)
    assert refused.value.code == 404 and json.loads(refused.value.read())["error"] == "unknown_sink"
    health = json.loads(urllib.request.urlopen(bases[0] + "/healthz", timeout=30).read())
    assert health["checks"]["database"]["ok"] is True
    sources = json.loads(urllib.request.urlopen(bases[1] + "/sources", timeout=30).read())
    assert [(s["name"], s["last_job"]["job_id"]) for s in sources["sources"]] == [("bucket", race["last_job_id"])]
    with urllib.request.urlopen(bases[2] + "/metrics", timeout=30) as resp:
        assert resp.status == 200 and b"ingestd_" in resp.read()
    for base in bases:  # the dashboard and its chart's data answer on every instance
        with urllib.request.urlopen(base + "/throughput", timeout=30) as resp:
            assert resp.status == 200 and "files" in json.loads(resp.read())
        with urllib.request.urlopen(base + "/", timeout=30) as resp:
            assert resp.status == 200
