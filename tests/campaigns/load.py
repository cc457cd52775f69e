"""Load campaign: bursts of small files dropped again and again into a running daemon
while many clients poll the HTTP API. Memory must stay flat, no request may fail, and
the queue must drain after every burst.

The daemon starts as a deployed one runs: with finished jobs behind it (--history), whose
newest page an operator's dashboard has listed, so its bounded manifest cache is full
before the first minute is measured. Started empty (--history 0), the run also measures
that cache filling, over its first 512 jobs (about three jobs a burst).

    python -m tests.campaigns.load --minutes 10 --pollers 100 --burst 2000   # full form
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from ingestd.api.models import MAX_PAGE
from ingestd.jobs.jobstore import CACHE_SIZE, JobStore
from tests.support.helpers import ROOT, wait_for, write_config
from tests.support.procs import Daemon

HISTORY = 2 * CACHE_SIZE  # finished jobs a full-form run starts with
MEAN_FILE_BYTES = 2050  # what `burst` writes on average: 1 to 4,096 random bytes and a newline


class Poller(threading.Thread):
    """One API client on a keep-alive connection, alternating job status and listings."""

    def __init__(self, address: str, latest: list[str], halt: threading.Event):
        super().__init__(daemon=True)
        host, port = address.rsplit(":", 1)
        self.conn_args = (host, int(port))
        self.latest, self.halt = latest, halt
        self.ok = self.errors = 0
        self.failures: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection(*self.conn_args, timeout=30)
        n = 0
        while not self.halt.is_set():
            path = f"/ingest/{self.latest[0]}" if (n % 2 and self.latest) else "/jobs?limit=20"
            n += 1
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.errors += 1
                    self.failures.append(f"{path} -> {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.errors += 1
                self.failures.append(f"{path} -> {type(exc).__name__}")
                conn.close()
                conn = http.client.HTTPConnection(*self.conn_args, timeout=30)


RSS_PARTS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory and its kinds: heap and stacks (anon), mapped files such as
    libraries, the magic database and SQLite's WAL index (file, shmem)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in RSS_PARTS:
            out[RSS_PARTS[key]] = int(line.split()[1]) / 1024
    return out


def burst(staging: Path, inbox: Path, count: int, round_no: int, rng: random.Random) -> None:
    """Write the files beside the inbox, then rename them in: a burst arrives at once."""
    folder = staging / f"r{round_no}"
    folder.mkdir()
    for i in range(count):
        (folder / f"f{i:05d}.txt").write_bytes(rng.randbytes(rng.randint(1, 4096)) + b"\n")
    os.rename(folder, inbox / folder.name)


def unit_environment() -> dict[str, str]:
    """The allocator settings systemd/ingestd.service starts the daemon with, read from the
    unit itself: the campaign measures the daemon as it is deployed, and cannot drift from it."""
    unit = (ROOT / "systemd" / "ingestd.service").read_text()
    return dict(line.removeprefix("Environment=").split("=", 1) for line in unit.splitlines()
                if line.startswith("Environment=GLIBC_TUNABLES="))


def seed_history(state: Path, jobs: int, files_per_job: int) -> str:
    """Finished jobs as the daemon records them (written by its own JobStore), so the run
    starts where a deployed daemon lives. Returns the newest job id ("" for none): later
    ids are the run's own."""
    store, newest = JobStore(state), ""
    for _ in range(jobs):
        m = store.create("inbox", "local", "watch")
        m.status, m.started_at = "succeeded", m.created_at
        m.counters.discovered = m.counters.ingested = files_per_job
        m.counters.bytes = files_per_job * MEAN_FILE_BYTES
        m.finished_at = m.created_at
        store.save(m)
        store.items_path(m).touch()
        newest = m.job_id
    return newest


def run(seconds: float, pollers: int, size: int, workdir: Path, seed: int = 1, as_deployed: bool = True,
        history: int = 0) -> dict:
    rng = random.Random(seed)
    inbox, staging, state = workdir / "inbox", workdir / "staging", workdir / "state"
    inbox.mkdir()
    staging.mkdir()
    after = seed_history(state, history, files_per_job=max(1, size // 3))
    config = write_config(
        workdir / "ingestd.toml", daemon={"state_dir": "state", "log_format": "json", "log_level": "warning"},
        http={"listen": "127.0.0.1:0"},
        sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2, "after": "delete"}],
    )
    env = unit_environment() if as_deployed else {}
    daemon = Daemon(config, state, workdir, env=env).start()
    address = json.loads((state / "daemon.json").read_text())["http"]
    warmed = listed(daemon, MAX_PAGE) if history else 0
    latest: list[str] = []
    halt = threading.Event()
    clients = [Poller(address, latest, halt) for _ in range(pollers)]
    for client in clients:
        client.start()
    samples: list[tuple[float, dict[str, float]]] = []
    drains: list[float] = []
    started = time.monotonic()
    sampler = threading.Thread(target=_sample, args=(daemon.proc.pid, started, samples, halt), daemon=True)
    sampler.start()
    rounds = 0
    try:
        while rounds < 2 or time.monotonic() - started < seconds:
            t0 = time.monotonic()
            burst(staging, inbox, size, rounds, rng)
            wait_for(lambda: not waiting(inbox) and daemon.idle(after), timeout=300,
                     message=f"burst {rounds} to drain")
            drains.append(time.monotonic() - t0)
            jobs = daemon.manifests(after)
            latest[:] = [jobs[-1]["job_id"]] if jobs else []
            rounds += 1
    except BaseException:
        daemon.close()  # a failed run must not leave its daemon running
        raise
    finally:
        halt.set()
        for client in clients:
            client.join(timeout=30)
        sampler.join(timeout=10)
    manifests = daemon.manifests(after)
    code = daemon.stop()
    daemon.close()
    failures = [f for c in clients for f in c.failures]
    report = {
        "seconds": round(time.monotonic() - started, 1), "bursts": rounds, "files": rounds * size,
        "history_jobs": history, "history_jobs_listed": warmed, "pollers": pollers,
        "requests_ok": sum(c.ok for c in clients), "request_errors": len(failures),
        "jobs": len(manifests), "jobs_not_succeeded": sum(1 for m in manifests if m["status"] != "succeeded"),
        "drain_s_median": round(statistics.median(drains), 2), "drain_s_max": round(max(drains), 2),
        **memory_verdict(_series(samples, "rss")), "exit_code": code, "failures_sample": failures[:5],
        "rss_mib_by_minute": _by_minute(_series(samples, "rss")), "daemon_environment": env,
        **{f"rss_{kind}_mib_by_minute": _by_minute(_series(samples, kind)) for kind in ("anon", "file", "shmem")},
    }
    return report


def memory_verdict(samples: list[tuple[float, float]]) -> dict:
    """RSS of the first and last minute (medians), and whether the change between them is
    within noise: how far RSS typically moves inside one minute of the run (allocator and
    libmagic sawtooth, thread churn), the median over its minutes of each one's range."""
    first = statistics.median(_window(samples, first=True))
    last = statistics.median(_window(samples, first=False))
    growth = last - first
    noise = statistics.median(max(v) - min(v) for v in _minutes(samples).values())
    return {"rss_mib_first": round(first, 1), "rss_mib_last": round(last, 1), "rss_mib_growth": round(growth, 1),
            "rss_mib_noise": round(noise, 1), "rss_flat": growth <= noise,
            "rss_mib_per_minute_second_half": round(_slope(samples[len(samples) // 2:]), 2)}


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares trend in MiB a minute: a leak keeps it positive, a filled cache brings it to ~0."""
    if len(samples) < 2 or samples[0][0] == samples[-1][0]:
        return 0.0
    times, values = zip(*samples)
    return statistics.linear_regression(times, values).slope * 60


def listed(daemon: Daemon, limit: int) -> int:
    """One listing of the newest jobs, as a dashboard opening its job list makes; returns
    how many came back."""
    status, body = daemon.get(f"/jobs?limit={limit}")
    if status != 200:
        raise AssertionError(f"GET /jobs?limit={limit} -> {status}")
    return len(body["jobs"])


def waiting(inbox: Path) -> bool:
    """Whether any dropped file is still in the drop folder. The daemon removes emptied
    subfolders while this walks, so a folder vanishing mid-walk is skipped, not an error
    (os.walk ignores it; Path.rglob raises)."""
    return any(name.endswith(".txt") for _, _, names in os.walk(inbox) for name in names)


def _sample(pid: int, started: float, samples: list, halt: threading.Event, every: float = 2.0) -> None:
    """The daemon's RSS every couple of seconds, for the whole run."""
    while True:
        samples.append((time.monotonic() - started, rss_mib(pid)))
        if halt.wait(every):
            return


def _series(samples: list[tuple[float, dict[str, float]]], kind: str) -> list[tuple[float, float]]:
    return [(t, memory[kind]) for t, memory in samples]


def _by_minute(samples: list[tuple[float, float]]) -> list[float]:
    """Median RSS of each minute of the run: growth shows as a trend, not a single pair."""
    return [round(statistics.median(v), 1) for _, v in sorted(_minutes(samples).items())]


def _minutes(samples: list[tuple[float, float]]) -> dict[int, list[float]]:
    minutes: dict[int, list[float]] = {}
    for t, rss in samples:
        minutes.setdefault(int(t // 60), []).append(rss)
    return minutes


def _window(samples: list[tuple[float, float]], first: bool) -> list[float]:
    """RSS samples of the first (or last) minute of the run, or of a third of it if shorter."""
    span = samples[-1][0]
    width = min(60.0, max(span / 3, 1e-9))
    chosen = [rss for t, rss in samples if (t <= width if first else t >= span - width)]
    return chosen or [samples[0 if first else -1][1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", type=int, default=HISTORY,
                        help=f"finished jobs the daemon starts with (default {HISTORY}; 0 starts it empty)")
    parser.add_argument("--bare", action="store_true",
                        help="start the daemon without the systemd unit's GLIBC_TUNABLES, to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-load-") as tmp:
        print(json.dumps(run(args.minutes * 60, args.pollers, args.burst, Path(tmp), args.seed,
                                   as_deployed=not args.bare, history=args.history), indent=2))


if __name__ == "__main__":
    main()
