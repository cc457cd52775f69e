"""The change feed and the document listing (issue 17):

- `feed-read`: a daemon on the big store (bench/bigstore.py: 1,000,000 documents, a tenth
  with two versions, and the 1,100,000 changes that made them). A consumer replays the
  whole feed from the first cursor, 500 changes a page, on one keep-alive connection
  (target ≥ 20,000 changes/s); then single pages of `/changes` and `/documents` from random
  places. The same pages on the small store (1,000 documents) are the reference: a page
  must cost the same however big the store (O(page), target: within 2x).
- `feed-latency`: commit → long-poll answer. A consumer waits in `GET /changes?wait=30`
  while a file is dropped; the latency runs from the change's `at` (stamped as its commit
  begins, so the commit's own fsync is inside the figure) to the answer's arrival.
  Target: p99 ≤ 50 ms.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from pathlib import Path

from .. import bigstore, ingest, measure
from ..context import Bench
from ..daemon import Daemon, wait_until
from ..stats import median, percentile
from .bigstore import make_stores
from .common import REFERENCE, SUBJECT, Case, check, result, rounds

PAGE = 500
LISTING_PAGE = 100
RATE_TARGET = 20_000.0
O_PAGE_RATIO = 2.0
P99_TARGET_MS = 50.0


class Api:
    """One keep-alive connection to a daemon's API."""

    def __init__(self, state: Path):
        host, port = json.loads((state / "daemon.json").read_text())["http"].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=120)

    def get(self, path: str) -> dict:
        self.conn.request("GET", path)
        reply = self.conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: {reply.status} {body[:300]!r}")
        return json.loads(body)

    def timed(self, path: str) -> float:
        started = time.perf_counter()
        self.get(path)
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.conn.close()


def read_side(bench: Bench, store: bigstore.BigStore, config, replay: bool):
    samples = 10 if bench.smoke else 50

    def side(i: int) -> dict:
        rng = random.Random(i)
        out: dict = {}
        with Daemon(config, store.state, store.state.parent) as daemon:
            api = Api(daemon.state_dir)
            try:
                api.get(f"/changes?limit={PAGE}")  # warm the connection and the first pages
                cpu = measure.cpu_seconds(daemon.pid)
                if replay:
                    out.update(_replay(api))
                cursors = [f"{rng.randrange(max(1, store.documents - PAGE)):016d}" for _ in range(samples)]
                out["changes_page_ms"] = median([api.timed(f"/changes?after={c}&limit={PAGE}") for c in cursors])
                ids = rng.sample(store.doc_ids, min(samples, len(store.doc_ids)))
                out["documents_page_ms"] = median([api.timed(f"/documents?after={d}&limit={LISTING_PAGE}")
                                                   for d in ids])
                out["cpu_s"] = round(measure.cpu_seconds(daemon.pid) - cpu, 3)  # the daemon's, while it was read
            finally:
                api.close()
        out["wall_s"] = out["changes_page_ms"] / 1000
        return out

    return side


def _replay(api: Api) -> dict:
    """Every change from the first, a page at a time, as a consumer starting over does."""
    started, after, total = time.perf_counter(), None, 0
    while True:
        page = api.get(f"/changes?limit={PAGE}" + (f"&after={after}" if after else ""))
        total += len(page["changes"])
        if not page["changes"]:
            break
        after = page["next_after"]
    seconds = time.perf_counter() - started
    return {"replayed": total, "replay_s": round(seconds, 3), "changes_per_s": round(total / seconds)}


def run_feed_read(bench: Bench, case: Case) -> dict:
    stores = make_stores(bench)
    (big, big_config), (small, small_config) = stores["big"], stores["small"]
    runs = rounds(bench, case, {SUBJECT: read_side(bench, big, big_config, replay=True),
                                REFERENCE: read_side(bench, small, small_config, replay=False)})
    rate = median([r[SUBJECT]["changes_per_s"] for r in runs])
    ratios = {key: median([r[SUBJECT][key] / r[REFERENCE][key] for r in runs])
              for key in ("changes_page_ms", "documents_page_ms")}
    checks = [check("replaying the feed: ms per 1,000 changes (20,000 changes/s)", 1000 * 1000 / rate,
                    1000 * 1000 / RATE_TARGET, unit="ms"),
              check("a /changes page, big store / small store", ratios["changes_page_ms"], O_PAGE_RATIO),
              check("a /documents page, big store / small store", ratios["documents_page_ms"], O_PAGE_RATIO)]
    replayed = median([r[SUBJECT]["replayed"] for r in runs])
    return result(case, runs, met=None, checks=checks, ratio=round(ratios["changes_page_ms"], 3),
                  changes_per_s=rate, page_ratios={k: round(v, 3) for k, v in ratios.items()}, job_only=False,
                  notes=[f"the big store: {big.documents:,} documents, {replayed:,.0f} changes; the reference "
                         f"{small.documents:,} documents",
                         f"replay: every change from the first, {PAGE} a page, one keep-alive connection; "
                         f"median {rate:,.0f} changes/s (target {RATE_TARGET:,.0f})",
                         f"single pages from random places (median ms), big/small: /changes "
                         f"{ratios['changes_page_ms']:.2f}x, /documents ({LISTING_PAGE} a page) "
                         f"{ratios['documents_page_ms']:.2f}x (target <= {O_PAGE_RATIO:g}x)"])


def run_feed_latency(bench: Bench, case: Case) -> dict:
    commits = 10 if bench.smoke else 200
    root = bench.scratch("feed-latency")
    inbox = root / "inbox"
    inbox.mkdir()
    config = ingest.write_config(root / "ingestd.toml", root / "state",
                                 [{"name": "inbox", "kind": "local", "path": inbox, "settle_seconds": 0.05}],
                                 http=True)
    latencies: list[float] = []
    with Daemon(config, root / "state", root) as daemon:
        api = Api(daemon.state_dir)
        cpu = measure.cpu_seconds(daemon.pid)
        try:
            after = api.get("/changes")["next_after"]
            for n in range(commits):
                api.conn.request("GET", f"/changes?after={after}&wait=30&limit=1")
                (inbox / f"f{n:05d}.txt").write_bytes(f"document {n}\n".encode())  # lands while the poll waits
                reply = api.conn.getresponse()
                arrived = time.time()
                page = json.loads(reply.read())
                if not page["changes"]:
                    raise RuntimeError("a long-poll ran out without the change")
                change = page["changes"][0]
                latencies.append((arrived - _epoch(change["at"])) * 1000)
                after = change["cursor"]
                wait_until(lambda: not any(inbox.iterdir()), 30, "the file to be moved out", daemon=daemon)
            cpu = measure.cpu_seconds(daemon.pid) - cpu
        finally:
            api.close()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    runs = [{SUBJECT: {"wall_s": p99 / 1000, "cpu_s": round(cpu, 3), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                       "max_ms": round(max(latencies), 2)}}]
    return result(case, runs, met=None, ratio=None, p50_ms=round(p50, 2), p99_ms=round(p99, 2), job_only=False,
                  checks=[check("commit to long-poll answer, p99", p99, P99_TARGET_MS, unit="ms")],
                  notes=[f"{commits} commits, one file each, each answered to a waiting GET /changes?wait=30",
                         "from the change's `at` (stamped as the commit begins: its fsync is included) to the "
                         "answer's arrival, on one machine's clock (ms resolution)"])


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


FEED_READ = Case("feed-read", "the change feed and listing on 1,000,000 documents: replay rate, O(page)",
                 "the same pages on 1,000 documents", ">= 20,000 changes/s; pages within 2x", run_feed_read,
                 max_runs=3)
FEED_LATENCY = Case("feed-latency", "commit → long-poll answer (GET /changes?wait=30)", "-",
                    "p99 <= 50 ms", run_feed_latency)
