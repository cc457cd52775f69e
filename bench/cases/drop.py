"""The running daemon's drop folder: how soon a dropped file is `succeeded` (files arriving
one at a time), and how fast a burst of thousands is taken (against the one-shot ingest
of the same files, which pays interpreter start-up instead of the quiet period).

Timestamps: the harness notes the wall clock right after each rename into place; the
daemon's manifest says when the job holding that file became `succeeded` (milliseconds,
UTC). Both are read from the same clock on the same machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import corpus as corpus_mod
from .. import ingest, measure
from ..context import Bench
from ..daemon import Daemon, wait_until
from ..stats import percentile
from .common import REFERENCE, SUBJECT, Case, result, rounds
from .local import drop_folder_config, oneshot_side

RATE = 20.0  # files per second: one at a time, as a scanner or a mail gateway drops them


def settle_seconds(bench: Bench) -> float:
    return 0.1 if bench.smoke else 0.5  # 0.5 s is ingestd's default


def start_daemon(bench: Bench, label: str, inbox_options: dict | None = None) -> tuple[Daemon, Path]:
    root = bench.scratch(label)
    inbox = root / "inbox"
    inbox.mkdir()
    options = {"settle_seconds": settle_seconds(bench), "after": bench.after, **(inbox_options or {})}
    config = drop_folder_config(root, inbox, **options)
    return Daemon(config, root / "state", root).start(), inbox


# -- drop latency ----------------------------------------------------------------------


def run_latency(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("small")
    count = 8 if bench.smoke else 60
    step = max(1, len(corpus.files) // count)  # every type, not the first folder's
    payloads = [corpus.path(rel).read_bytes() for rel in corpus.files[::step][:count]]
    timings: list[tuple[float, dict]] = []  # (rename time, its job's times), measured rounds only

    def side(i: int) -> dict:
        daemon, inbox = start_daemon(bench, "drop-latency")
        try:
            with measure.Window(daemon.pid) as cpu:
                dropped = _drop_paced(inbox, payloads, i)
                done = _wait_taken(daemon, set(dropped), timeout=60 + count)
        finally:
            daemon.stop()
        pairs = [(t, done[name]) for name, t in dropped.items()]
        if i >= bench.warmup:
            timings.extend(pairs)
        lat = [job["finished"] - t for t, job in pairs]
        return {"wall_s": round(cpu.wall_s, 3), "cpu_s": round(cpu.cpu_s, 3),
                "p50_s": round(percentile(lat, 50), 4), "p99_s": round(percentile(lat, 99), 4),
                "max_s": round(max(lat), 4), "jobs": len({job["job_id"] for job in done.values()})}

    runs = rounds(bench, case, {SUBJECT: side})
    return _latency_result(bench, case, runs, timings, count)


def _latency_result(bench: Bench, case: Case, runs: list[dict], timings: list[tuple[float, dict]],
                    count: int) -> dict:
    """Pooled percentiles over every measured file, and where each file's time went."""
    settle = settle_seconds(bench)
    lat = [job["finished"] - t for t, job in timings]
    stages = {
        "queued": [job["created"] - t for t, job in timings],
        "waiting": [job["started"] - job["created"] for _, job in timings],
        "job": [job["finished"] - job["started"] for _, job in timings],
    }
    breakdown = {name: {"p50_ms": round(percentile(v, 50) * 1000, 1), "p99_ms": round(percentile(v, 99) * 1000, 1)}
                 for name, v in stages.items()}
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    return result(
        case, runs, met=p50 <= settle + 0.020 and p99 <= settle + 0.100, ratio=round(p50 / settle, 3),
        settle_s=settle, files_per_run=count, rate_per_s=RATE, p50_s=round(p50, 4), p99_s=round(p99, 4),
        p50_over_settle_ms=round((p50 - settle) * 1000, 1), p99_over_settle_ms=round((p99 - settle) * 1000, 1),
        stages=breakdown, notes=[
            f"{len(lat)} files over {bench.runs} runs; p50/p99 pooled; the ratio is p50 / settle_seconds",
            "where a file's time goes (p50 / p99, ms): rename → job created (settle + watcher + waiting "
            f"for the source's previous job) {_pair(breakdown['queued'])}; created → started (queue) "
            f"{_pair(breakdown['waiting'])}; started → succeeded (the job) {_pair(breakdown['job'])}",
        ])


def _pair(stage: dict) -> str:
    return f"{stage['p50_ms']:.0f} / {stage['p99_ms']:.0f}"


def _drop_paced(inbox: Path, payloads: list[bytes], run: int) -> dict[str, float]:
    """Write each file under a hidden temp name, then rename it into place at RATE per
    second (the pacing is the workload). Returns name → wall time of its rename."""
    dropped = {}
    start = time.monotonic()
    for n, data in enumerate(payloads):
        due = start + n / RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = f"drop-{run:02d}-{n:04d}.dat"
        tmp = inbox / f".{name}.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, inbox / name)
        dropped[name] = time.time()
    return dropped


def _wait_taken(daemon: Daemon, names: set[str], timeout: float) -> dict[str, dict]:
    """name → when its job was created, started and `succeeded` (wall clock), once every
    name is in a succeeded job."""
    done: dict[str, dict] = {}
    read: set[str] = set()

    def poll() -> bool:
        for m in ingest.manifests(daemon.state_dir):
            if m["job_id"] in read or m["status"] in ("queued", "running"):
                continue
            if m["status"] != "succeeded":
                raise RuntimeError(f"job {m['job_id']} ended {m['status']}: {m['errors'][:3]}")
            read.add(m["job_id"])
            times = {key: ingest.parse_time(m[f"{key}_at"]) for key in ("created", "started", "finished")}
            times["job_id"] = m["job_id"]
            for item in ingest.items(daemon.state_dir, m):
                name = item["origin_uri"].rsplit("/", 1)[-1]
                if name in names:
                    done[name] = times
        return len(done) == len(names)

    wait_until(poll, timeout, f"{len(names)} dropped files to be ingested", interval=0.02, daemon=daemon)
    return done


# -- burst -----------------------------------------------------------------------------


def run_burst(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("small")
    runs = rounds(bench, case, {SUBJECT: burst_side(bench, corpus),
                                REFERENCE: oneshot_side(bench, corpus, "burst-oneshot")})
    res = result(case, runs, met=None, files=len(corpus.files), settle_s=settle_seconds(bench))
    res["met"] = res["ratio"] is not None and res["ratio"] <= 1.3
    res["notes"].append(f"the daemon's time includes the {settle_seconds(bench)} s quiet period "
                        "(settle_seconds); the one-shot's includes interpreter start-up")
    return res


def burst_side(bench: Bench, corpus: corpus_mod.Corpus, inbox_options: dict | None = None,
               label: str = "burst-daemon"):
    """Every top-level folder of the corpus renamed into the watched folder at once; time
    from the first rename to the last job holding those files `succeeded`."""

    def side(i: int) -> dict:
        daemon, inbox = start_daemon(bench, label, inbox_options)
        try:
            staging = inbox.parent / "staging"
            corpus_mod.link_tree(corpus, staging)
            measure.sync()
            with measure.Window(daemon.pid) as cpu:
                start = time.time()
                for entry in sorted(os.listdir(staging)):
                    os.rename(staging / entry, inbox / entry)
                finished, jobs = wait_burst(daemon, len(corpus.files), timeout=300)
        finally:
            daemon.stop()
        wall = finished - start
        return {"wall_s": round(wall, 4), "cpu_s": round(cpu.cpu_s, 3), "jobs": jobs,
                "files_per_s": round(len(corpus.files) / wall, 1)}

    return side


def wait_burst(daemon: Daemon, count: int, timeout: float) -> tuple[float, int]:
    """(wall time the last job became `succeeded`, number of jobs) once `count` files are in.
    Only manifests that changed are read again: a burst of 100,000 files makes a hundred jobs."""
    watch = ingest.ManifestWatch(daemon.state_dir)

    def poll():
        ms = watch.read()
        if any(m["status"] in ("queued", "running") for m in ms):
            return None
        bad = [m for m in ms if m["status"] != "succeeded"]
        if bad:
            raise RuntimeError(f"job {bad[0]['job_id']} ended {bad[0]['status']}: {bad[0]['errors'][:3]}")
        taken = sum(m["counters"]["ingested"] + m["counters"]["unchanged"] for m in ms)
        if taken < count:
            return None
        return max(ingest.parse_time(m["finished_at"]) for m in ms), len(ms)

    return wait_until(poll, timeout, f"a burst of {count} files to be ingested", interval=0.02, daemon=daemon)


LATENCY = Case("drop-latency", "drop latency, files dropped one at a time at ~20/s into the running daemon",
               "`settle_seconds`", "p50 <= settle + 20 ms, p99 <= settle + 100 ms", run_latency)
BURST = Case("burst", "burst: small corpus dropped at once into the running daemon",
             "one-shot ingest of the same corpus", "<= 1.3x", run_burst)
