"""The dashboard against a daemon with a history: 3 sources, 1,000 finished jobs and 10,000
documents (bench/bigstore.py, in ingestd's own formats). Two targets:

- each page ready in < 300 ms: headless Chromium loads it afresh (a new document, not a
  hash change) and the page's own `ready:<page>` mark, set once its data is drawn, is read
  from Navigation Timing (milliseconds since the navigation started);
- an open dashboard costs the daemon < 1% CPU: the daemon's CPU time (/proc) over windows
  of a minute with the Overview open, with the Jobs list open, and with no page open
  (about:blank), interleaved so the machine's other load falls on all alike.

Debian's chromium and chromium-driver must be installed (.ci/run installs them).
"""

from __future__ import annotations

import random
import time

from tests.support import browser

from .. import bigstore, ingest, measure
from ..context import Bench
from ..daemon import Daemon
from ..stats import median, percentile
from .common import SUBJECT, Case, check, result, skipped

READY_MS = 300.0
CPU_PERCENT = 1.0
PAGES = ("overview", "jobs", "job", "document", "documents")


def scale(bench: Bench) -> dict:
    if bench.smoke:
        return {"documents": 500, "jobs": 50, "loads": 2, "window_s": 3.0, "pairs": 1}
    return {"documents": 10_000, "jobs": 1_000, "loads": 10, "window_s": 60.0, "pairs": 2}


def make_site(bench: Bench) -> tuple[bigstore.BigStore, object]:
    s = scale(bench)
    template = bigstore.make_template(bench.scratch("dashboard-template"))
    root = bench.scratch("dashboard")
    sources = []
    for name in (bigstore.SOURCE, "scans", "mail"):
        (root / name).mkdir()
        sources.append({"name": name, "kind": "local", "path": root / name})
    bench.log(f"generating a store of {s['documents']:,} documents and {s['jobs']:,} jobs")
    store = bigstore.generate(template, root / "state", root / bigstore.SOURCE, s["documents"], s["jobs"])
    config = ingest.write_config(root / "ingestd.toml", root / "state", sources, http=True)
    measure.sync()
    return store, config


def page_times(driver, base: str, store: bigstore.BigStore, loads: int) -> dict[str, list[float]]:
    """Milliseconds from navigation start to each page's ready mark, `loads` fresh loads each
    (the first load of each page is a warm-up: the browser's own first-use costs)."""
    rng = random.Random(7)
    urls = {"overview": lambda: "/#/", "jobs": lambda: "/#/jobs",
            "job": lambda: f"/#/jobs/{rng.choice(store.job_ids)}",
            "document": lambda: f"/#/documents/{rng.choice(store.doc_ids)}",
            "documents": lambda: "/#/documents"}
    out: dict[str, list[float]] = {page: [] for page in PAGES}
    for i in range(loads + 1):
        for page in PAGES:
            driver.get("about:blank")
            driver.get(base + urls[page]())
            browser.wait_ready(driver, page)
            ms = driver.execute_script(f"return performance.getEntriesByName('ready:{page}')[0].startTime")
            if i:
                out[page].append(ms)
    errors = browser.errors(browser.console(driver))
    if errors:
        raise RuntimeError(f"the pages logged errors: {errors[:3]}")
    return out


def cpu_windows(driver, base: str, pid: int, window_s: float, pairs: int) -> dict[str, list[float]]:
    """The daemon's CPU share (% of one core) in windows with each page open and none."""
    out: dict[str, list[float]] = {"none": [], "overview": [], "jobs": []}
    for i in range(pairs):
        order = ["none", "overview", "jobs"]
        for which in order[i % 3:] + order[:i % 3]:
            driver.get("about:blank")
            if which != "none":
                driver.get(base + ("/#/" if which == "overview" else "/#/jobs"))
                browser.wait_ready(driver, which)
            with measure.Window(pid) as w:
                time.sleep(window_s)  # the window is the workload: the page polls on its own meanwhile
            out[which].append(100.0 * w.cpu_s / w.wall_s)
    return out


def run_dashboard(bench: Bench, case: Case) -> dict:
    missing = browser.missing()
    if missing:
        return skipped(case, missing)
    s = scale(bench)
    store, config = make_site(bench)
    with Daemon(config, store.state, store.state.parent) as daemon, browser.browser() as driver:
        base = f"http://{daemon.http_address}"
        times = page_times(driver, base, store, s["loads"])
        cpu = cpu_windows(driver, base, daemon.pid, s["window_s"], s["pairs"])
    summary = {page: {"p50_ms": round(median(ms), 1), "p90_ms": round(percentile(ms, 90), 1),
                      "max_ms": round(max(ms), 1)} for page, ms in times.items()}
    idle = median(cpu["none"])
    cost = {page: round(median(cpu[page]) - idle, 3) for page in ("overview", "jobs")}
    runs = [{SUBJECT: {"wall_s": round(max(max(ms) for ms in times.values()) / 1000, 4)}}]
    checks = [check(f"{page} ready (p90 of {s['loads']} fresh loads)", summary[page]["p90_ms"], READY_MS, unit="ms")
              for page in PAGES]
    checks += [check(f"daemon CPU with the {page} open, minus none open", cost[page], CPU_PERCENT, unit="%")
               for page in cost]
    bench.log(f"dashboard: pages {summary}; CPU % none {idle:.3f}, cost {cost}")
    return result(case, runs, met=None, ratio=None, checks=checks, job_only=False, pages=summary, cpu_cost=cost,
                  cpu_percent={k: [round(v, 3) for v in vs] for k, vs in cpu.items()},
                  notes=[f"{store.documents:,} documents, {store.jobs:,} finished jobs, 3 sources; "
                         f"each page loaded {s['loads']} times afresh after one warm-up load, in headless Chromium",
                         f"CPU: {s['pairs']} interleaved rounds of {s['window_s']:g} s windows (none / overview / "
                         f"jobs open); the daemon's CPU with no page open was {idle:.3f}% of one core"])


DASHBOARD = Case("dashboard", "dashboard pages and polling, 10,000 documents, 1,000 jobs", "-",
                 "each page < 300 ms; an open page < 1% daemon CPU", run_dashboard, opt_in=True, max_runs=1,
                 warmup=False)
