"""Remote-fault campaign: S3 and SharePoint syncs through a proxy that injects 500, 503,
SlowDown, 429, connection resets, stalls mid-body and truncated bodies at random
(seeded), while the buckets and libraries keep changing between jobs.

    python -m tests.campaigns.faults --requests 5000 --seed 1     # the full form

Every job must end succeeded, partial or failed with typed remote codes (`throttled`,
`transient`, `integrity`), no traceback, and no request sent more often than the retry
policy allows; everything a job stored must be the origin's real content, every blob
must hash to its name. After the last faulty round, one clean run of each source must
bring the store exactly in line with the origin, and the run after that must fetch
nothing. The last line printed is a one-line JSON summary.

Waits that are not under test are shortened (see `remote.quick`): botocore's and the
SharePoint connector's retry backoff are scaled by `--backoff-scale`, and the S3 read
timeout is 1 s (SharePoint's `timeout` is set to its 1 s floor), so a stall costs a
second. Attempt counts are the production ones. The short form runs in `make test`
(tests/campaigns/test_faults.py).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.campaigns.faultproxy import GraphFlavour, S3Flavour
from tests.campaigns.remote import GraphSide, Logs, S3Side, Side, environment, isolate_aws, quick
from tests.conftest import SECRET_HOLDERS, SECRET_MARKER
from tests.plugins.s3.kit import BUCKET, MotoS3

RATES = (0.05, 0.15, 0.3, 0.6)  # per round, one is drawn: calm rounds, rough ones, a storm


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.02:
        return 0
    if roll < 0.72:
        return rng.randint(1, 16 * 1024)
    if roll < 0.96:
        return rng.randint(16 * 1024, 256 * 1024)
    return rng.randint(512 * 1024, 2560 * 1024)  # crosses the 1 MiB S3 and 256 KiB Graph chunks


class Origin:
    """Changes one side's content between jobs: new objects, edits, deletions."""

    def __init__(self, side: Side, rng: random.Random):
        self.side, self.rng, self.n = side, rng, 0

    def _name(self) -> str:
        self.n += 1
        folder = self.rng.choice(["", "a/", "a/b/", "reports/2026/", "deep/er/and/deeper/"])
        return f"{folder}f{self.n:05d}.bin"

    def live(self) -> list[str]:
        return self.side.keys() if isinstance(self.side, S3Side) else sorted(self.side.paths)

    def populate(self, count: int) -> None:
        for _ in range(count):
            self.side.put(self._name(), self.rng.randbytes(_size(self.rng)))

    def change(self) -> None:
        rng, live = self.rng, self.live()
        self.populate(rng.randint(1, 6))
        for name in rng.sample(live, min(len(live), rng.randint(0, 4))):  # edits
            path = name if isinstance(self.side, S3Side) else self.side.paths[name]
            self.side.put(path, rng.randbytes(_size(rng)))
        if len(live) > 30:
            for name in rng.sample(live, rng.randint(0, 2)):
                self.side.delete(name)


def run(seed: int, requests: int, workdir: Path, *, rates=RATES, backoff_scale: float = 0.1, kinds: dict | None = None,
        services=("s3", "sharepoint"), objects: int = 60, progress=None) -> dict:
    """The campaign; returns the summary. `kinds` maps a service to the fault kinds
    drawn for it (default: all it can take)."""
    from tests.fakegraph import make_ca

    started = time.monotonic()
    rng = random.Random(seed)
    kinds = {"s3": S3Flavour.kinds, "sharepoint": GraphFlavour.kinds, **(kinds or {})}
    with environment(isolate_aws(workdir)), quick(backoff_scale):
        logs = Logs()
        moto = MotoS3() if "s3" in services else None
        sides: list[Side] = []
        try:
            if moto is not None:
                moto.s3.create_bucket(Bucket=BUCKET)
                sides.append(S3Side(workdir / "s3", moto, logs))
            if "sharepoint" in services:
                sides.append(GraphSide(workdir / "sharepoint", make_ca(workdir), logs))
            report = _campaign(rng, seed, requests, sides, rates, kinds, objects, progress)
            leaks = secret_leaks(workdir, logs.stream.getvalue())
            assert not leaks, f"a test secret leaked into {leaks[:5]}"
            report["secret_leaks"] = 0
        finally:
            for side in sides:
                side.close()
            if moto is not None:
                moto.stop()
    report.update(seconds=round(time.monotonic() - started, 1))
    return report


def secret_leaks(workdir: Path, log: str) -> list[str]:
    """Files (manifests, item files, state, blobs) and log lines holding a test secret;
    the registries, which must hold them, excepted."""
    marker = SECRET_MARKER.encode()
    hits = [str(p.relative_to(workdir)) for p in workdir.rglob("*")
            if p.is_file() and not p.is_symlink() and not any(h in p.name.lower() for h in SECRET_HOLDERS)
            and marker in p.read_bytes()]
    return hits + (["the log"] if SECRET_MARKER in log else [])


def _campaign(rng, seed, target, sides, rates, kinds, objects, progress) -> dict:
    origins = {side.name: Origin(side, rng) for side in sides}
    for origin in origins.values():
        origin.populate(objects)
    jobs: Counter = Counter()
    statuses: Counter = Counter()
    codes: Counter = Counter()
    by_rate: dict[str, Counter] = {}
    items_verified = documents_checked = 0
    max_attempts: Counter = Counter()
    rounds = 0
    while sum(len(s.proxy.snapshot()) for s in sides) < target:
        rounds += 1
        for side in sides:
            origins[side.name].change()
            rate = rng.choice(rates)
            side.proxy.randomly(seed=rng.getrandbits(32), rate=rate, kinds=tuple(kinds[side.name]))
            job = side.run()
            items_verified += job.check()
            documents_checked += side.check_store()
            jobs[(side.name, job.status)] += 1
            statuses[job.status] += 1
            by_rate.setdefault(f"{rate:g}", Counter())[job.status] += 1
            codes.update(job.codes)
            max_attempts[side.name] = max(max_attempts[side.name], max(job.attempts().values(), default=0))
            if progress:
                progress(f"round {rounds} {side.name}: rate {rate:g}, {job.status}, {len(job.exchanges)} requests, "
                         f"faults {dict(Counter(e.fault for e in job.exchanges if e.fault))}")
    # the weather clears: one clean run must converge, the next must fetch nothing
    converged = {}
    for side in sides:
        side.proxy.calm()
        job = side.run()
        job.check(allowed=set())
        assert job.status == "succeeded", f"{side.name}: the first clean run ended {job.status}: {job.manifest}"
        converged[side.name] = side.check_converged()
        quiet = side.run()
        fetched = side.fetched(quiet)
        assert quiet.status == "succeeded" and fetched == 0, f"{side.name}: the run after converging fetched {fetched}"
    faults = {s.name: dict(sorted(s.proxy.injected().items())) for s in sides}
    return {
        "campaign": "remote-faults", "seed": seed, "rounds": rounds,
        "requests": sum(len(s.proxy.snapshot()) for s in sides),
        "requests_by_service": {s.name: len(s.proxy.snapshot()) for s in sides},
        "faults": dict(sorted(sum((Counter(f) for f in faults.values()), Counter()).items())),
        "faults_by_service": faults,
        "jobs": dict(sorted(statuses.items())),
        "jobs_by_service": {s.name: {st: n for (name, st), n in sorted(jobs.items()) if name == s.name} for s in sides},
        "jobs_by_fault_rate": {rate: dict(sorted(c.items())) for rate, c in sorted(by_rate.items())},
        "error_codes": dict(sorted(codes.items())),
        "max_attempts_per_request": dict(max_attempts),
        "items_verified": items_verified, "documents_verified": sum(converged.values()),
        "store_checks": documents_checked, "corrupt_stored": 0, "converged_after_one_clean_run": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="keep going until this many requests were proxied")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--backoff-scale", type=float, default=0.1)
    parser.add_argument("--quiet", action="store_true", help="only the summary line")
    args = parser.parse_args()
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="ingestd-faults-") as tmp:
        report = run(args.seed, args.requests, Path(tmp), backoff_scale=args.backoff_scale, progress=progress)
    print(json.dumps(report, separators=(",", ":")))


if __name__ == "__main__":
    main()
