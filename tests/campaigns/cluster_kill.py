"""Cluster kill campaign (issue 18, "Done means: Kill"): three `ingestd run` instances on
one private PostgreSQL, moto's S3 as the blob store and as four source buckets, and the
Graph fake serving two SharePoint libraries; a tenth of the contents are the same bytes
in every source. Once a job has committed `--kill-after` items, the instance running it
is SIGKILLed (the sources are held slow for that moment, so the job is surely mid-way).
Then:

- every job it was running shows `failed`/`interrupted` on the other instances' APIs
  within 2 x lease_ttl of the kill, and each one's `recovery` job is claimed by a survivor;
- after the drain: exactly one document per origin, one version each, every sha256 the
  generated content's, and as many blobs in the store as distinct contents;
- one more round of every source fetches nothing (moto's request log: 0 object GETs on
  the source buckets; the Graph fake's log: 0 downloads).

    python -m tests.campaigns.cluster_kill                    # the full form (4 x 500 S3, 2 x 200 SharePoint)
    python -m tests.campaigns.cluster_kill --api-rounds 20    # and the API race, 20 rounds

The short form runs inside `make test` (tests/cluster/test_campaign.py). The last line
printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ingestd.store.catalogue import doc_id_for
from tests.cluster.kit import s3_source
from tests.cluster.nodes import BUCKET, standalone
from tests.conftest import make_secret
from tests.support.helpers import wait_for

SP_CLIENT = "6731de76-14a6-49ae-97bc-6eba6914391e"
SHARED = 10  # every tenth item's bytes are the same in every source
SLOW = 0.2  # seconds added to each object GET / download until the kill (jobs last a while)
HOLD = 5.0  # ... and around the kill: the chosen job cannot finish between the look and the kill
INSTANCES = ("a", "b", "c")


@dataclass(frozen=True)
class Plan:
    s3_sources: int = 4
    objects: int = 500
    sp_sources: int = 2
    files: int = 200
    kill_after: int = 150
    seed: int = 18


def content(rng: random.Random, source: str, i: int) -> bytes:
    if i % SHARED == 0:
        return f"shared content {i}\n".encode() * 40
    return f"{source} item {i}\n".encode() + rng.randbytes(rng.randint(100, 6000))


class Origins:
    """The sources as they stand: their configs, and what each document must hold
    (doc_id → sha256, as the catalogue names documents)."""

    def __init__(self, plan: Plan, cluster, root: Path):
        from tests.fakegraph import FakeGraph, make_ca

        rng = random.Random(plan.seed)
        self.moto, self.delay = cluster.moto, [SLOW]
        self.buckets = {f"s3-{n}": f"src{n}" for n in range(plan.s3_sources)}
        self.want: dict[str, str] = {}
        self.sources: list[dict] = []
        for name, bucket in self.buckets.items():
            self.moto.s3.create_bucket(Bucket=bucket)
            for i in range(plan.objects):
                data = content(rng, name, i)
                self.moto.put(f"f/{i:04d}.txt", data, bucket=bucket)
                self.want[doc_id_for(name, f"s3://{bucket}/f/{i:04d}.txt")] = hashlib.sha256(data).hexdigest()
            self.sources.append(s3_source(name, bucket, self.moto.url))
        self.fake = None
        if plan.sp_sources:
            ca = make_ca(root)
            self.fake = FakeGraph(ca, root).start()
            self.fake.page_size = 200
            self.fake.add_app(SP_CLIENT, SP_SECRET)
            self.fake.before_download = lambda _item: self._slow()
            for n in range(plan.sp_sources):
                name = f"sp-{n}"
                drive = self.fake.add_site(path=f"/sites/team{n}", title=f"Team {n}").add_drive()
                for i in range(plan.files):
                    data = content(rng, name, i)
                    item = drive.add(f"folder{i % 4}/doc{i:04d}.txt", data)
                    self.want[doc_id_for(name, item)] = hashlib.sha256(data).hexdigest()
                self.sources.append({"name": name, "kind": "sharepoint", "site_url": drive.site.web_url,
                                     "credentials": "sp", "graph_url": self.fake.base_url,
                                     "authority_url": self.fake.base_url, "ca_bundle": str(ca.cert_path),
                                     "every": 3600})
        self.moto.log.hooks.append(self._slow_get)

    def _slow(self) -> None:
        if self.delay[0]:
            time.sleep(self.delay[0])

    def _slow_get(self, req):
        if req.bucket in self.buckets.values() and req.method == "GET" and req.per_object:
            self._slow()
        return None

    def registry_entries(self) -> dict:
        if self.fake is None:
            return {}
        return {"sp": {"type": "azure_client_secret", "tenant_id": self.fake.tenant, "client_id": SP_CLIENT,
                       "client_secret": SP_SECRET}}

    def fetches(self) -> tuple[int, int]:
        """(object GETs on the source buckets, downloads from the Graph fake) so far."""
        gets = sum(1 for r in list(self.moto.log.requests)
                   if r.bucket in self.buckets.values() and r.method == "GET" and r.per_object)
        downloads = len(self.fake.of_kind("download")) if self.fake is not None else 0
        return gets, downloads

    def close(self) -> None:
        if self.fake is not None:
            self.fake.stop()


SP_SECRET = make_secret("cluster-kill-sp")


def api(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=30) as resp:
        return json.loads(resp.read())


def running(cluster) -> list[tuple[str, str, str, int]]:
    """(job_id, source, instance, items done) of the running jobs, most done first."""
    rows = cluster.conn.execute(
        "SELECT job_id, source, instance_id, (manifest->'counters'->>'ingested')::int "
        "+ (manifest->'counters'->>'unchanged')::int + (manifest->'counters'->>'failed')::int "
        "+ (manifest->'counters'->>'skipped')::int FROM jobs WHERE status = 'running' ORDER BY 4 DESC").fetchall()
    return [tuple(r) for r in rows]


def run(plan: Plan, workdir: Path, api_rounds: int = 0, progress=lambda line: None, cluster=None) -> dict:
    """The campaign on `cluster` (the tests' fixture), or on a standalone one of its own."""
    started = time.monotonic()
    with (contextlib.nullcontext(cluster) if cluster is not None else standalone(workdir)) as cluster:
        origins = Origins(plan, cluster, workdir)
        try:
            report = _campaign(plan, cluster, origins, progress)
            if api_rounds:  # the killed instance back first: the race is run on all three
                from tests.cluster.race import api_race

                cluster.restart(report["killed"])
                report["api_race"] = api_race(cluster, "s3-0", origins.buckets["s3-0"], api_rounds)
        finally:
            cluster.stop_instances()
            origins.close()
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _campaign(plan: Plan, cluster, origins: Origins, progress) -> dict:
    registry = json.loads(cluster.registry.read_text())
    cluster.registry.write_text(json.dumps({**registry, **origins.registry_entries()}))
    cluster.http, cluster.sources = True, origins.sources
    cluster.start(*INSTANCES)
    progress(f"{len(INSTANCES)} instances up, {len(origins.sources)} sources, {len(origins.want)} documents to come")
    # the kill: the first job past `kill_after` items; the sources are held still around it
    job_id, source, victim, done = wait_for(
        lambda: next((r for r in running(cluster) if r[3] >= plan.kill_after), None), timeout=600,
        interval=0.05, message=f"a job to commit {plan.kill_after} items")
    origins.delay[0] = HOLD
    cluster.instances[victim].kill()
    killed_at = time.monotonic()
    # what it was running when it died, read after the kill: a job of its that committed its
    # end between a look before the kill and the kill itself is not one the kill interrupted
    # (the dead write nothing more, and the reaper waits a lease's length)
    victims = [r for r in running(cluster) if r[2] == victim]
    origins.delay[0] = 0
    progress(f"killed {victim} with {len(victims)} job(s) running ({source}: {done} items)")
    survivors = [n for n in INSTANCES if n != victim]
    bases = [cluster.instances[n].base_url for n in survivors]
    victim_jobs = {r[0] for r in victims}
    assert job_id in victim_jobs

    def interrupted_everywhere():
        for base in bases:
            listed = {m["job_id"]: m for m in api(base, "/jobs?limit=500")["jobs"]}
            if not all(listed.get(j, {}).get("status") == "failed"
                       and "interrupted" in [e["code"] for e in listed[j]["errors"]] for j in victim_jobs):
                return False
        return True

    wait_for(interrupted_everywhere, timeout=600, interval=0.1, message="the killed jobs to show interrupted")
    seen_after = time.monotonic() - killed_at
    assert seen_after <= 2 * cluster.ttl, f"the killed jobs showed interrupted {seen_after:.1f}s after the kill"
    sources = {r[1] for r in victims}

    def recovery_claimed():
        rows = cluster.conn.execute("SELECT source, instance_id FROM jobs WHERE trigger = 'recovery' "
                                    "AND status <> 'queued'").fetchall()
        return {s for s, inst in rows if inst in survivors} >= sources

    wait_for(recovery_claimed, timeout=600, interval=0.1, message="the recovery jobs to be claimed")
    claimed_after = time.monotonic() - killed_at
    progress(f"interrupted on {survivors} after {seen_after:.1f}s, recovery claimed after {claimed_after:.1f}s")
    rows = wait_for(cluster.settled, timeout=900, message="the drain")
    drained_after = time.monotonic() - killed_at
    statuses = {r[0]: (r[1], r[2], r[3]) for r in rows}
    assert all(statuses[j][0] == "failed" for j in victim_jobs)
    others = {j: s for j, s in statuses.items() if j not in victim_jobs}
    assert all(s[0] == "succeeded" for s in others.values()), others
    assert sorted(s[1] for s in others.values() if s[1] == "recovery") == ["recovery"] * len(sources)
    catalogue = check_catalogue(cluster, origins.want)
    progress(f"drained {drained_after:.1f}s after the kill: {catalogue}")
    # one more round: every source asked for again, on the survivors in turn; nothing fetched
    before = origins.fetches()
    for n, spec in enumerate(origins.sources):
        status, body = cluster.instances[survivors[n % len(survivors)]].post("/ingest", {"source": spec["name"]})
        assert status == 202, (status, body)
    rows = wait_for(cluster.settled, timeout=600, message="the extra round")
    after = origins.fetches()
    last = rows[-len(origins.sources):]
    assert all(r[1] == "succeeded" and r[5]["counters"]["ingested"] == 0 for r in last), last
    assert after == before, f"the extra round fetched {after[0] - before[0]} objects, {after[1] - before[1]} files"
    assert check_catalogue(cluster, origins.want) == catalogue
    return {"campaign": "cluster-kill", "seed": plan.seed, "instances": len(INSTANCES),
            "s3_sources": plan.s3_sources, "objects_per_s3_source": plan.objects, "sp_sources": plan.sp_sources,
            "files_per_sp_source": plan.files, "killed": victim, "killed_jobs": len(victim_jobs),
            "killed_job_items_done": done, "interrupted_seen_s": round(seen_after, 1),
            "recovery_claimed_s": round(claimed_after, 1), "drained_s": round(drained_after, 1),
            "lease_ttl_s": cluster.ttl, "jobs": len(rows), **catalogue,
            "extra_round_object_gets": after[0] - before[0], "extra_round_downloads": after[1] - before[1]}


def check_catalogue(cluster, want: dict[str, str]) -> dict:
    """One document per origin, one version each with the generated content's sha256,
    and one blob per distinct content in the store."""
    rows = cluster.conn.execute("SELECT d.doc_id, count(v.seq), max(v.sha256), min(v.sha256) FROM documents d "
                                "JOIN versions v USING (doc_id) GROUP BY d.doc_id").fetchall()
    got = {doc: sha for doc, _n, sha, _low in rows}
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, f"{len(missing)} documents missing, {len(extra)} not expected"
    twice = [doc for doc, n, _sha, _low in rows if n != 1]
    assert not twice, f"{len(twice)} documents have more than one version"
    wrong = [doc for doc, sha in got.items() if sha != want[doc]]
    assert not wrong, f"{len(wrong)} documents hold the wrong bytes"
    keys = set()
    for page in cluster.moto.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="store/blobs/"):
        keys.update(o["Key"].rsplit("/", 1)[1] for o in page.get("Contents", []))
    distinct = set(want.values())
    assert keys == distinct, f"{len(keys)} blobs in the store for {len(distinct)} distinct contents"
    return {"documents": len(got), "versions": len(rows), "distinct_contents": len(distinct), "blobs": len(keys),
            "missing": 0, "duplicated": 0, "wrong_sha256": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s3-sources", type=int, default=Plan.s3_sources)
    parser.add_argument("--objects", type=int, default=Plan.objects, help="per S3 source")
    parser.add_argument("--sp-sources", type=int, default=Plan.sp_sources)
    parser.add_argument("--files", type=int, default=Plan.files, help="per SharePoint source")
    parser.add_argument("--kill-after", type=int, default=Plan.kill_after, help="items a job has committed")
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--api-rounds", type=int, default=0, help="then the API race, this many rounds")
    args = parser.parse_args()
    plan = Plan(args.s3_sources, args.objects, args.sp_sources, args.files, args.kill_after, args.seed)
    with tempfile.TemporaryDirectory(prefix="ingestd-cluster-kill-") as tmp:
        report = run(plan, Path(tmp), args.api_rounds, lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report, separators=(",", ":")))


if __name__ == "__main__":
    main()
