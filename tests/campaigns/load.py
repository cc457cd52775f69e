"""Load campaign: bursts of small files dropped again and again into a running daemon
while many clients poll the HTTP API. Memory must stay flat, no request may fail, and
the queue must drain after every burst.

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

from tests.helpers import ROOT, wait_for, write_config
from tests.procs import Daemon


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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


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


def run(seconds: float, pollers: int, size: int, workdir: Path, seed: int = 1, as_deployed: bool = True) -> dict:
    rng = random.Random(seed)
    inbox, staging, state = workdir / "inbox", workdir / "staging", workdir / "state"
    inbox.mkdir()
    staging.mkdir()
    config = write_config(
        workdir / "ingestd.toml", daemon={"state_dir": "state", "log_format": "json", "log_level": "warning"},
        http={"listen": "127.0.0.1:0"},
        sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2, "after": "delete"}],
    )
    env = unit_environment() if as_deployed else {}
    daemon = Daemon(config, state, workdir, env=env).start()
    address = json.loads((state / "daemon.json").read_text())["http"]
    latest: list[str] = []
    halt = threading.Event()
    clients = [Poller(address, latest, halt) for _ in range(pollers)]
    for client in clients:
        client.start()
    samples: list[tuple[float, float]] = []
    drains: list[float] = []
    started = time.monotonic()
    sampler = threading.Thread(target=_sample, args=(daemon.proc.pid, started, samples, halt), daemon=True)
    sampler.start()
    rounds = 0
    try:
        while rounds < 2 or time.monotonic() - started < seconds:
            t0 = time.monotonic()
            burst(staging, inbox, size, rounds, rng)
            wait_for(lambda: not waiting(inbox) and daemon.idle(), timeout=300,
                     message=f"burst {rounds} to drain")
            drains.append(time.monotonic() - t0)
            jobs = daemon.manifests()
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
    manifests = daemon.manifests()
    code = daemon.stop()
    daemon.close()
    failures = [f for c in clients for f in c.failures]
    first, last = _window(samples, first=True), _window(samples, first=False)
    report = {
        "seconds": round(time.monotonic() - started, 1), "bursts": rounds, "files": rounds * size,
        "pollers": pollers, "requests_ok": sum(c.ok for c in clients), "request_errors": len(failures),
        "jobs": len(manifests), "jobs_not_succeeded": sum(1 for m in manifests if m["status"] != "succeeded"),
        "drain_s_median": round(statistics.median(drains), 2), "drain_s_max": round(max(drains), 2),
        "rss_mib_first": round(first, 1), "rss_mib_last": round(last, 1), "rss_mib_growth": round(last - first, 1),
        "exit_code": code, "failures_sample": failures[:5],
        "rss_mib_by_minute": _by_minute(samples), "daemon_environment": env,
    }
    return report


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


def _by_minute(samples: list[tuple[float, float]]) -> list[float]:
    """Median RSS of each minute of the run: growth shows as a trend, not a single pair."""
    minutes: dict[int, list[float]] = {}
    for t, rss in samples:
        minutes.setdefault(int(t // 60), []).append(rss)
    return [round(statistics.median(v), 1) for _, v in sorted(minutes.items())]


def _window(samples: list[tuple[float, float]], first: bool) -> float:
    """Median RSS over the first (or last) minute of the run, or a third of it if shorter."""
    span = samples[-1][0]
    width = min(60.0, max(span / 3, 1e-9))
    chosen = [rss for t, rss in samples if (t <= width if first else t >= span - width)]
    return statistics.median(chosen or [samples[0 if first else -1][1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bare", action="store_true",
                        help="start the daemon without the systemd unit's GLIBC_TUNABLES, to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-load-") as tmp:
        print(json.dumps(run(args.minutes * 60, args.pollers, args.burst, Path(tmp), args.seed,
                                   as_deployed=not args.bare), indent=2))


if __name__ == "__main__":
    main()
