"""Crash-consistency campaign: SIGKILL the daemon at random moments while files keep
arriving in a drop folder and objects keep arriving in an S3 bucket (moto's server) that
the daemon syncs every second; restart it each time, then check that nothing was lost or
stored twice, and that the S3 sync state is consistent (one more sync fetches nothing).

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

from tests.conftest import make_secret
from tests.support.helpers import drop_file, wait_for, write_config
from tests.support.procs import Daemon


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
            drop_file(path, data, rename=n % 3 == 0)  # a third by temp name + rename
            self.expected[path.as_uri()] = data
            n += 1
            self.halt.wait(1.0 / self.rate)


class Uploader(threading.Thread):
    """Puts objects into the bucket at a steady pace, until stopped."""

    def __init__(self, moto, rng: random.Random, rate: float = 20.0):
        super().__init__(daemon=True)
        self.moto, self.rng, self.rate = moto, rng, rate
        self.expected: dict[str, bytes] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            key = f"in/{n % 4}/obj-{n:06d}.dat"
            data = self.rng.randbytes(self.rng.randint(1, 32 * 1024))
            self.moto.put(key, data)
            self.expected[f"s3://docs/{key}"] = data
            n += 1
            self.halt.wait(1.0 / self.rate)


def wait_for_drain(daemon: Daemon, inbox: Path, expected: dict[str, bytes], *, stall: float = 120.0,
                   cap: float = 900.0) -> None:
    """Wait until every expected origin is stored and the drop folder is empty and idle.

    The deadline follows progress, not the clock: on a machine shared with CPU hogs the
    daemon drains a backlog of thousands of files several times slower, which is not a
    failure; two minutes in which not one more origin is stored is (a stall), and so is
    the cap. The message says which, with what is left, so a failure tells them apart."""
    started = last_progress = time.monotonic()
    best = -1
    while True:
        left = _waiting_files(inbox)
        stored = set(daemon.documents())
        missing = [o for o in expected if o not in stored]
        if not left and not missing and _source_idle(daemon, "inbox"):
            return
        now = time.monotonic()
        if len(stored) > best:
            best, last_progress = len(stored), now
        if now - last_progress > stall or now - started > cap:
            why = "no progress for" if now - last_progress > stall else "still progressing after"
            open_jobs = [(m["source"], m["job_id"], m["status"]) for m in daemon.manifests()
                         if m["status"] in ("queued", "running")]
            raise AssertionError(
                f"drain: {why} {round(now - (last_progress if why.startswith('no') else started))}s; "
                f"{len(missing)} of {len(expected)} origins not stored (e.g. {missing[:3]}), "
                f"{len(left)} files still in the drop folder (e.g. {left[:3]}), open jobs {open_jobs[:5]}; "
                f"log tail:\n{daemon.log_text()[-3000:]}")
        time.sleep(0.25)  # polling reads the whole catalogue: keep it off the daemon's CPU


def _waiting_files(inbox: Path) -> list[str]:
    return [str(p.relative_to(inbox)) for p in inbox.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _source_idle(daemon: Daemon, source: str) -> bool:
    return all(m["status"] not in ("queued", "running") for m in daemon.manifests() if m["source"] == source)


def run(kills: int, seed: int, workdir: Path, max_delay: float = 1.5, s3: bool = True) -> dict:
    rng = random.Random(seed)
    inbox, state = workdir / "inbox", workdir / "state"
    inbox.mkdir(parents=True)
    moto = _moto() if s3 else None
    config = campaign_config(workdir, moto, "crash")
    writer = Writer(inbox, rng)
    uploader = Uploader(moto, random.Random(seed + 1)) if moto is not None else None
    daemon = Daemon(config, state, workdir, env=_aws_isolation(workdir))
    started = time.monotonic()
    for thread in (writer, uploader):
        if thread is not None:
            thread.start()
    try:
        for _ in range(kills):
            daemon.start()
            time.sleep(rng.uniform(0.0, max_delay))  # the kill point is the experiment, not a wait
            daemon.kill()
        for thread in (writer, uploader):
            if thread is not None:
                thread.halt.set()
                thread.join()
        daemon.start()
        expected = dict(writer.expected)
        if uploader is not None:
            expected.update(uploader.expected)
        drain_started = time.monotonic()
        wait_for_drain(daemon, inbox, expected)
        drain_seconds = round(time.monotonic() - drain_started, 1)
        noop_gets = _noop_resync(daemon, moto) if moto is not None else None
        assert daemon.stop() == 0  # a clean stop: scheduled syncs may be mid-run until now
        report = verify(daemon, state, expected)
        if moto is not None:
            report.update(s3_noop_gets=noop_gets, objects=len(uploader.expected))
    finally:
        daemon.close()
        if moto is not None:
            moto.stop()
    report.update(kills=kills, seed=seed, seconds=round(time.monotonic() - started, 1),
                  dropped_files=len(writer.expected), drain_seconds=drain_seconds)
    return report


def campaign_config(workdir: Path, moto, name: str, **s3_options) -> Path:
    """The config the kill campaigns run: the drop folder `inbox`, and (with moto) the
    bucket `docs` synced every second with a registry credential; HTTP on a free port."""
    sources = [{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.1, "batch_max": 50}]
    credentials = None
    if moto is not None:
        registry = workdir / "credentials.json"
        registry.write_text(json.dumps({"s3": {"type": "aws", "access_key_id": f"AKIA{name.upper():0<16}"[:20],
                                               "secret_access_key": make_secret(name)}}))
        registry.chmod(0o600)
        credentials = {"registry": str(registry)}
        sources.append({"name": "bucket", "kind": "s3", "bucket": "docs", "endpoint_url": moto.url,
                        "addressing_style": "path", "region": "us-east-1", "credentials": "s3", "every": "1s",
                        **s3_options})
    return write_config(workdir / "ingestd.toml",
                        daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 5},
                        http={"listen": "127.0.0.1:0"}, credentials=credentials, sources=sources)


def _moto():
    try:
        from tests.plugins.s3.kit import BUCKET, MotoS3
    except ImportError:  # boto3/moto absent: the drop-folder half still runs
        return None
    moto = MotoS3()
    moto.s3.create_bucket(Bucket=BUCKET)
    return moto


def _aws_isolation(workdir: Path) -> dict:
    return {"AWS_CONFIG_FILE": str(workdir / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-creds"),
            "AWS_EC2_METADATA_DISABLED": "true"}


def _noop_resync(daemon: Daemon, moto) -> int:
    """After everything is stored, the next scheduled sync must fetch nothing."""
    moto.log.clear()
    before = {m["job_id"] for m in daemon.manifests() if m["source"] == "bucket"}

    def next_sync():
        fresh = [m for m in daemon.manifests() if m["source"] == "bucket" and m["job_id"] not in before
                 and m["status"] not in ("queued", "running")]
        return fresh[0] if fresh else None

    job = wait_for(next_sync, timeout=30, message="one more scheduled S3 sync")
    assert job["status"] == "succeeded", job
    assert job["counters"]["ingested"] == 0 and job["counters"]["deleted"] == 0, job["counters"]
    gets = moto.log.count("GET", per_object=True)
    assert gets == 0, f"a no-op resync fetched {gets} objects"
    return gets


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
    return {"items": len(expected), "jobs": len(manifests), "interrupted_jobs": interrupted,
            "documents": len(stored), "lost": 0, "duplicated": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--no-s3", action="store_true", help="drop folder only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-crash-") as tmp:
        print(json.dumps(run(args.kills, args.seed, Path(tmp), s3=not args.no_s3), indent=2))


if __name__ == "__main__":
    main()
