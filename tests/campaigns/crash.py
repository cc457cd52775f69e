"""Crash-consistency campaign: SIGKILL the daemon at random moments while files keep
arriving, restart it each time, then check that nothing was lost or stored twice.

    python -m tests.campaigns.crash --kills 100        # the full form (a few minutes)

The short form runs inside `make test` (tests/campaigns/test_campaigns.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from tests.helpers import wait_for, write_config
from tests.procs import Daemon


class Writer(threading.Thread):
    """Drops files into the inbox the way real writers do, until stopped."""

    def __init__(self, inbox: Path, rng: random.Random, rate: float = 200.0):
        super().__init__(daemon=True)
        self.inbox, self.rng, self.rate = inbox, rng, rate
        self.expected: dict[str, bytes] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            name = f"d{n % 5}/f{n:06d}.bin"
            data = self.rng.randbytes(self.rng.randint(1, 64 * 1024))
            path = self.inbox / name
            path.parent.mkdir(exist_ok=True)
            if n % 3 == 0:  # temp name + rename, as careful writers do
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(data)
                os.rename(tmp, path)
            else:
                path.write_bytes(data)
            self.expected[path.as_uri()] = data
            n += 1
            self.halt.wait(1.0 / self.rate)


def drained(d: Daemon, inbox: Path) -> bool:
    left = [p for p in inbox.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return not left and d.idle()


def run(kills: int, seed: int, workdir: Path, max_delay: float = 1.5) -> dict:
    rng = random.Random(seed)
    inbox, state = workdir / "inbox", workdir / "state"
    inbox.mkdir(parents=True)
    config = write_config(
        workdir / "ingestd.toml",
        daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 5},
        http={"listen": "127.0.0.1:0"},
        sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.1, "batch_max": 50}],
    )
    writer = Writer(inbox, rng)
    daemon = Daemon(config, state, workdir)
    started = time.monotonic()
    writer.start()
    try:
        for _ in range(kills):
            daemon.start()
            time.sleep(rng.uniform(0.0, max_delay))  # the kill point is the experiment, not a wait
            daemon.kill()
        writer.halt.set()
        writer.join()
        daemon.start()
        wait_for(lambda: drained(daemon, inbox), timeout=120, message="the inbox to drain after the last restart")
        report = verify(daemon, state, writer.expected)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    report.update(kills=kills, seed=seed, seconds=round(time.monotonic() - started, 1))
    return report


def verify(daemon: Daemon, state: Path, expected: dict[str, bytes]) -> dict:
    manifests = daemon.manifests()  # every manifest parses, or this raises
    assert not [m for m in manifests if m["status"] in ("queued", "running")], "a job was left open"
    db = sqlite3.connect(state / "documents.sqlite")
    rows = db.execute("SELECT origin_uri, sha256, size FROM versions ORDER BY origin_uri, seq").fetchall()
    db.close()
    stored: dict[str, list[str]] = {}
    for origin, sha, _size in rows:
        stored.setdefault(origin, []).append(sha)
    missing = [o for o in expected if o not in stored]
    assert not missing, f"{len(missing)} dropped files were never stored, e.g. {missing[:3]}"
    twice = {o: v for o, v in stored.items() if len(v) != 1}
    assert not twice, f"{len(twice)} files stored more than once, e.g. {list(twice.items())[:2]}"
    wrong = [o for o, data in expected.items() if stored[o][0] != hashlib.sha256(data).hexdigest()]
    assert not wrong, f"{len(wrong)} files stored with the wrong content"
    for blob in (state / "blobs" / "sha256").rglob("*"):
        if blob.is_file():
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob}"
    orphans = [p for p in (state / "blobs" / "tmp").iterdir()] + list((state / "jobs").glob(".*.tmp"))
    assert not orphans, f"orphan temp files: {orphans[:3]}"
    interrupted = sum(1 for m in manifests if any(e["code"] == "interrupted" for e in m["errors"]))
    return {"files": len(expected), "jobs": len(manifests), "interrupted_jobs": interrupted,
            "documents": len(stored), "lost": 0, "duplicated": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-crash-") as tmp:
        print(json.dumps(run(args.kills, args.seed, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
