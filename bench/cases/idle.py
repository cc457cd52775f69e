"""What the daemon costs while nothing arrives: two watched drop folders and one S3 source
on its schedule, measured over a quiet window after start-up work (the catch-up scans and
the first scheduled S3 run) has finished. The window is the workload: it is slept through.
"""

from __future__ import annotations

import time

from .. import ingest, measure, s3server
from ..context import Bench
from ..daemon import Daemon, wait_until
from .common import SUBJECT, Case, result
from .s3 import bucket, connector_problem

WINDOW = 60.0
BUDGET = 0.3  # CPU seconds per 60 s window


def run_idle(bench: Bench, case: Case) -> dict:
    window = 1.0 if bench.smoke else WINDOW
    s3_problem = connector_problem()
    notes = []
    if s3_problem:
        notes.append(f"third source is a drop folder, not S3: {s3_problem}")

    def side() -> dict:
        root = bench.scratch("idle")
        sources = []
        for name in ("inbox-a", "inbox-b") + (("inbox-c",) if s3_problem else ()):
            (root / name).mkdir()
            sources.append({"name": name, "kind": "local", "path": root / name})
        registry = None
        if not s3_problem:
            registry = ingest.write_registry(root / "credentials.json", {"moto": {
                "type": "aws", "access_key_id": s3server.ACCESS_KEY, "secret_access_key": s3server.SECRET_KEY}})
            sources.append({"name": "bucket", "kind": "s3", "bucket": bucket(bench, "bench-small", "small"),
                            "endpoint_url": bench.s3().endpoint, "region": s3server.REGION, "credentials": "moto",
                            "addressing_style": "path", "every": "5m"})
        config = ingest.write_config(root / "ingestd.toml", root / "state", sources, http=True, registry=registry)
        with Daemon(config, root / "state", root) as daemon:
            if not s3_problem:
                wait_until(lambda: _first_run_done(daemon), 300, "the first scheduled S3 run", interval=0.1,
                           daemon=daemon)
            wake0 = measure.wakeups(daemon.pid)
            with measure.Window(daemon.pid) as cpu:
                time.sleep(window)
            wakes = measure.wakeups(daemon.pid) - wake0
            memory = measure.memory_mib(daemon.pid)
        return {"wall_s": round(cpu.wall_s, 3), "cpu_s": round(cpu.cpu_s, 3),
                "cpu_per_hour_s": round(cpu.cpu_s * 3600 / cpu.wall_s, 1),
                "wakeups_per_s": round(wakes / cpu.wall_s, 1), **memory}

    runs = [{SUBJECT: side()}]  # one quiet window is the measurement: nothing to warm up
    bench.log(f"idle: {runs[0][SUBJECT]['cpu_s']:.3f} CPU-s in {window:.0f} s")
    cpu = runs[0][SUBJECT]["cpu_s"]
    budget = BUDGET * window / WINDOW
    notes.append(f"one {window:.0f} s window; budget scaled to {budget:.3f} CPU-s" if bench.smoke
                 else f"one {window:.0f} s window after start-up work finished")
    return result(case, runs, met=cpu <= budget, ratio=None, window_s=window, budget_cpu_s=round(budget, 3),
                  notes=notes)


def _first_run_done(daemon: Daemon) -> bool:
    return any(m["source"] == "bucket" and m["status"] not in ("queued", "running")
               for m in ingest.manifests(daemon.state_dir))


IDLE = Case("idle", "idle daemon with three sources, 60 s", "-", "<= 0.3 CPU-seconds in all, RSS reported", run_idle)
