"""A daemon living on a big store: 1,000,000 documents and 100,000 finished jobs (made by
bench/bigstore.py in ingestd's own formats). Each round starts the daemon on it and on a
small store (1,000 documents, 100 jobs) and measures, on both:

- start-up: from the process's start to READY=1 (what systemd waits for), and its CPU;
- 50 pollers, each asking twice a second (100 requests a second in all, half the default
  `http.max_requests_per_second`, so the pacer never holds a request back) for a random
  job's status (`GET /ingest/{id}`, any of the 100,000: most are not in the daemon's cache)
  and a random document (`GET /documents/{id}`): p50 and p99 latency per endpoint;
- `/jobs` paging: pages of 50 walked from the newest job and from one in the middle of
  the history (each page fresh), the first page again and again, and a sparse filter.

Extraction is off: the generated store has no blobs, so the extraction queue would only
record a million `corrupt` texts while the API is measured.

Each store is started once before the rounds, unmeasured: that first start indexes every
manifest and writes `jobs/.finished-jobs`, which every later start reads instead (a store a
daemon has lived on always has it; one made by the generator or by a version before the file
pays one such start).

The page cache is warm (the store was just written, or read by the previous round): a
cold start after a reboot is slower, and dropping the machine's caches is not ours to do
on a shared machine.
"""

from __future__ import annotations

import random

from .. import bigstore, ingest, measure, poll
from ..context import Bench
from ..daemon import Daemon
from ..stats import median, paired_ratio, percentile
from .common import REFERENCE, SUBJECT, Case, all_met, check, result, rounds

READY_S = 2.0
P99_MS = 5.0
PAGE = 50


def scale(bench: Bench) -> dict:
    if bench.smoke:
        return {"big": (2_000, 200), "small": (500, 100), "pollers": 5, "rate": 5.0, "seconds": 1.0, "pages": 3}
    return {"big": (1_000_000, 100_000), "small": (1_000, 100), "pollers": 50, "rate": 2.0, "seconds": 15.0,
            "pages": 20}


def make_stores(bench: Bench) -> dict[str, tuple[bigstore.BigStore, object]]:
    """Both stores, generated once per invocation; label → (store, config path)."""
    if "bigstores" not in bench.made:
        s = scale(bench)
        template = bigstore.make_template(bench.scratch("bigstore-template"))
        out = {}
        for label in ("big", "small"):
            docs, jobs = s[label]
            root = bench.scratch(f"bigstore-{label}")
            (root / "inbox").mkdir()
            bench.log(f"generating a store of {docs:,} documents and {jobs:,} jobs")
            store = bigstore.generate(template, root / "state", root / "inbox", docs, jobs)
            bench.log(f"generated in {store.seconds:.1f} s")
            config = ingest.write_config(root / "ingestd.toml", root / "state",
                                         [{"name": bigstore.SOURCE, "kind": "local", "path": root / "inbox"}],
                                         http=True, extract=False,
                                         # the pollers stand for as many clients, but all come from
                                         # 127.0.0.1: past the default share of 32 they were refused 503
                                         per_client=s["pollers"] + 8)
            # the first start reads every manifest and writes jobs/.finished-jobs, as a daemon's
            # first start after ingesting them would have: the measured starts are the later ones
            bench.log(f"first start on the {label} store (not measured)")
            Daemon(config, store.state, store.state.parent).start(timeout=900).stop()
            out[label] = (store, config)
        measure.sync()
        bench.made["bigstores"] = out
    return bench.made["bigstores"]


def store_side(bench: Bench, store: bigstore.BigStore, config):
    s = scale(bench)

    def pick(n: int, rng: random.Random) -> tuple[str, str]:
        if n % 2:
            return "documents", f"/documents/{rng.choice(store.doc_ids)}"
        return "ingest", f"/ingest/{rng.choice(store.job_ids)}"

    def side(i: int) -> dict:
        daemon = Daemon(config, store.state, store.state.parent).start(timeout=600)
        try:
            ready_cpu = measure.cpu_seconds(daemon.pid)
            ready_rss = measure.memory_mib(daemon.pid)["current_rss_mib"]
            address = daemon.http_address
            polled = poll.poll(address, s["pollers"], s["rate"], s["seconds"], pick, seed=i + 1)
            if polled.errors:
                raise RuntimeError(f"{len(polled.errors)} polls failed, e.g. {polled.errors[:3]}")
            paging = _paging(address, store, s["pages"])
            after = measure.memory_mib(daemon.pid)
        finally:
            daemon.stop()
        lat = polled.latencies_ms
        return {"wall_s": round(daemon.ready_s, 4), "cpu_s": round(ready_cpu, 3),
                "rss_mib": round(after["peak_rss_mib"], 1), "ready_rss_mib": round(ready_rss, 1),
                "requests_per_s": round(sum(map(len, lat.values())) / polled.seconds, 1),
                **{f"{kind}_{q}_ms": round(percentile(lat.get(kind, []), p), 3)
                   for kind in ("ingest", "documents") for q, p in (("p50", 50), ("p99", 99))},
                **paging}

    return side


def _paging(address: str, store: bigstore.BigStore, pages: int) -> dict:
    first = f"/jobs?limit={PAGE}"
    middle = f"/jobs?limit={PAGE}&before={store.middle_job}"
    walk_top = poll.walk(address, first, pages)
    walk_middle = poll.walk(address, middle, pages)
    repeated = [ms for status, _, ms in poll.gets(address, [first] * 10) if status == 200]
    failed = [ms for status, _, ms in poll.gets(address, [f"/jobs?status=failed&limit={PAGE}"] * 5)
              if status == 200]
    big_page = [ms for status, _, ms in poll.gets(address, ["/jobs?limit=500"] * 3) if status == 200]
    return {"page_top_ms": round(median(walk_top), 3), "page_middle_ms": round(median(walk_middle), 3),
            "page_again_ms": round(median(repeated), 3), "page_failed_ms": round(median(failed), 3),
            "page_500_ms": round(median(big_page), 3)}


def run_big_store(bench: Bench, case: Case) -> dict:
    stores = make_stores(bench)
    big, small = stores["big"][0], stores["small"][0]
    runs = rounds(bench, case, {SUBJECT: store_side(bench, *stores["big"]),
                                REFERENCE: store_side(bench, *stores["small"])})
    s = scale(bench)
    res = result(case, runs, met=None, documents=big.documents, jobs=big.jobs,
                 generated_s=round(big.seconds, 1), store_mib=round(bigstore.disk_bytes(big.state) / 2**20))
    ours = res["summary"][SUBJECT]
    res["checks"] = [
        check("start-up to READY", ours["wall_s"], READY_S, unit="s"),
        check("GET /ingest/{id} p99", ours["ingest_p99_ms"], P99_MS, unit="ms"),
        check("GET /documents/{id} p99", ours["documents_p99_ms"], P99_MS, unit="ms"),
        check("a /jobs page from mid-history / from the top (p50, fresh pages)",
              _ratio(ours["page_middle_ms"], ours["page_top_ms"]), 2.0),
        check("first /jobs page, big store / small store (p50, fresh pages)",
              paired_ratio(runs, SUBJECT, REFERENCE, key="page_top_ms"), 2.0),
    ]
    res["met"] = all_met(res["checks"])
    res["notes"] += [
        f"{big.documents:,} documents (a tenth with two versions) and {big.jobs:,} finished jobs "
        f"(2% partial, 0.2% failed), {res['store_mib']:,} MiB on disk, generated in {big.seconds:.0f} s; "
        f"the reference store has {small.documents:,} documents and {small.jobs:,} jobs",
        f"{s['pollers']} pollers x {s['rate']:g} requests/s for {s['seconds']:g} s, alternating a random job "
        f"and a random document; p50/p99 per round, medians over rounds",
        f"/jobs pages of {PAGE}: `page_top` walks {s['pages']} pages from the newest job, `page_middle` as many "
        f"from the middle of the history, `page_again` asks for the first page 10 times, `page_failed` filters "
        f"status=failed, `page_500` is one page of 500",
        "wall s is the start-up to READY=1; CPU s the daemon's CPU up to READY; RSS the daemon's peak",
    ]
    return res


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


BIG_STORE = Case("big-store", "a daemon on 1,000,000 documents and 100,000 jobs: start-up, API latency, paging",
                 "the same daemon on 1,000 documents and 100 jobs", "READY <= 2 s; p99 <= 5 ms; /jobs O(page)",
                 run_big_store, max_runs=3, warmup=False)
