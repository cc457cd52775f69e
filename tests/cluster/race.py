"""The API race (issue 18, "Done means: API"): rounds of concurrent `POST /ingest` for one
source on every instance at once. Each round must give exactly one 202, the others 409
`busy` naming the winner's job; `/jobs` must then read the same on every instance.
`test_nodes.py` runs 5 rounds; `python -m tests.campaigns.cluster_kill --api-rounds 20`
runs the full form on the campaign's three instances."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from tests.support.helpers import wait_for


def post_ingest(base: str, source: str) -> tuple[int, dict]:
    req = urllib.request.Request(base + "/ingest", data=json.dumps({"source": source}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def one_round(bases: list[str], source: str) -> list[tuple[int, dict]]:
    barrier, answers = threading.Barrier(len(bases)), []

    def ask(base):
        barrier.wait()
        answers.append(post_ingest(base, source))

    threads = [threading.Thread(target=ask, args=(b,)) for b in bases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def api_race(cluster, source: str, bucket: str, rounds: int) -> dict:
    """`rounds` rounds on every running instance of `cluster` (HTTP on) for `source`, an
    S3 source on `bucket`; each job is held by a slow listing (1 s) of the bucket so that
    every request of a round meets it."""
    slow = [True]

    def slow_lists(req):
        if req.bucket == bucket and req.is_list and slow[0]:
            time.sleep(1.0)
        return None

    cluster.moto.log.hooks.append(slow_lists)
    live = [d for d in cluster.instances.values() if d.proc.poll() is None]
    bases = [d.base_url for d in live]
    won = []
    try:
        for _round in range(rounds):
            answers = one_round(bases, source)
            accepted = [body for code, body in answers if code == 202]
            refused = [body for code, body in answers if code == 409]
            assert len(accepted) == 1 and len(refused) == len(bases) - 1, answers
            assert {r["error"] for r in refused} == {"busy"}, answers
            assert {r["job_id"] for r in refused} == {accepted[0]["job_id"]}, answers
            won.append(accepted[0]["job_id"])
            wait_for(cluster.settled, timeout=120, message="the round's job to finish")
    finally:
        slow[0] = False
    listings = [json.loads(urllib.request.urlopen(b + "/jobs?limit=500", timeout=30).read()) for b in bases]
    assert all(listing == listings[0] for listing in listings), "/jobs differs between instances"
    assert set(won) <= {m["job_id"] for m in listings[0]["jobs"]}
    return {"rounds": rounds, "instances": len(bases), "accepted": len(won), "refused_busy": rounds * (len(bases) - 1),
            "jobs_listed_identically": len(listings[0]["jobs"]), "last_job_id": won[-1]}
