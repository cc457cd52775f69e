"""S3 sync against moto's server: ingestd's one-shot job next to `rclone copy` (the
reference, with its best flags) and `aws s3 sync` (a second peer).

Every tool run is bracketed by marker requests in the server's log, so the report says
how many requests each tool sent, how many named an object (a no-op resync should send
none), and how much CPU the server spent answering them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path

from .. import ingest, measure, peers, s3server
from ..context import Bench
from ..delay import DelayProxy
from ..stats import paired_ratio
from .common import REFERENCE, SUBJECT, Case, check, peer_notes, result, rounds

SOURCE = "bucket"
CHANGED_SHARE = 0.01
DELAY_S = 0.050  # added to every request in s3-latency: a region away


@functools.cache
def connector_problem() -> str | None:
    """Why the s3 connector cannot run, per `ingestd plugins`, or None when it can."""
    done = subprocess.run(ingest.command("plugins", "--json"), capture_output=True, text=True,
                          env=ingest.env(), cwd=ingest.ROOT, timeout=60)
    try:
        rows = json.loads(done.stdout)
    except ValueError:
        return f"`ingestd plugins --json` failed: {done.stderr[-500:]}"
    for row in rows:
        for kind in row.get("connectors", []):
            if kind["kind"] == "s3":
                return None if kind["available"] else f"the s3 connector is unavailable: {kind['remediation']}"
    return "no plugin registers the s3 connector yet (`ingestd plugins` lists none)"


def bucket(bench: Bench, name: str, corpus_name: str) -> str:
    """A bucket filled with a corpus, once per invocation."""
    if name not in bench.buckets:
        corpus = bench.corpus(corpus_name)
        bench.log(f"filling s3://{name} with the {corpus_name} corpus ({len(corpus.files)} objects)")
        bench.s3().fill(name, corpus)
        bench.buckets[name] = corpus_name
    return name


class Tools:
    """The three tools, each syncing one bucket into a directory of its own."""

    def __init__(self, bench: Bench, bucket_name: str, endpoint: str | None = None):
        self.bench = bench
        self.bucket = bucket_name
        self.endpoint = endpoint  # None: the server itself; else a proxy in front of it

    @property
    def server(self) -> s3server.S3Server:
        return self.bench.s3()

    def available(self) -> dict[str, bool]:
        return {"ingestd": True, "rclone": not self.bench.tool("rclone").missing,
                "aws": not self.bench.tool("aws").missing}

    def ingestd(self, root: Path) -> dict:
        config = root / "ingestd.toml"
        if not config.exists():
            registry = ingest.write_registry(root / "credentials.json", {"moto": {
                "type": "aws", "access_key_id": s3server.ACCESS_KEY, "secret_access_key": s3server.SECRET_KEY}})
            ingest.write_config(config, root / "state", [{
                "name": SOURCE, "kind": "s3", "bucket": self.bucket, "endpoint_url": self.endpoint or self.server.endpoint,
                "region": s3server.REGION, "credentials": "moto", "addressing_style": "path", "concurrency": 8,
            }], registry=registry)

        def job():
            usage, manifest = ingest.ingest(config, SOURCE)
            c = manifest["counters"]
            return usage, {"job_s": ingest.job_seconds(manifest), "ingested": c["ingested"],
                           "unchanged": c["unchanged"]}

        return self._bracketed(job)

    def rclone(self, dest: Path) -> dict:
        return self._bracketed(lambda: (peers.rclone_copy(self.bench.tool("rclone"), self.server, self.bucket,
                                                          dest, dest.parent, self.endpoint).usage, {}))

    def aws(self, dest: Path) -> dict:
        return self._bracketed(lambda: (peers.aws_sync(self.bench.tool("aws"), self.server, self.bucket,
                                                       dest, dest.parent).usage, {}))

    def _bracketed(self, fn) -> dict:
        measure.sync()  # ingestd's syncfs must not pay for what earlier runs left dirty
        start = self.server.mark()
        with self.server.cpu() as moto:
            usage, extra = fn()
        counts = self.server.between(start, self.server.mark())
        return {**usage.as_dict(), **extra, "moto_cpu_s": round(moto.cpu_s, 3), "requests": counts["total"],
                "list_requests": counts["list"], "per_object_requests": counts["per_object"]}

    def sides(self, dirs: dict[str, Path], fresh: bool, with_peers: bool = True, aws: bool = True) -> dict:
        """name → side function; `fresh` gives every run an empty destination; without
        peers only ingestd runs (the smoke variant runs the peers in one case only)."""

        def make(name: str, tool):
            def side(i: int) -> dict:
                label = f"{self.bucket}-{name}" + ("-proxied" if self.endpoint else "")
                target = self.bench.scratch(label) if fresh else dirs[name]
                return tool(target if name == SUBJECT else target / "copy")
            return side

        out = {SUBJECT: make(SUBJECT, self.ingestd)}
        if with_peers and self.available()["rclone"]:
            out[REFERENCE] = make(REFERENCE, self.rclone)
        if with_peers and aws and self.available()["aws"]:
            out["aws"] = make("aws", self.aws)
        return out

    def baseline(self, with_peers: bool = True) -> dict[str, Path]:
        """One untimed first sync per tool, into directories the resync rounds reuse."""
        dirs = {}
        for name, side in self.sides({}, fresh=True, with_peers=with_peers).items():
            side(-1)
            dirs[name] = self.bench.workdir / "scratch" / f"{self.bucket}-{name}"
        return dirs


DURABLE = ("ingestd's time includes making what it fetched durable (syncfs and fsync before the job "
           "succeeds) and recording every object; rclone and aws only write the files, without any sync")


def _needs(bench: Bench, with_peers: bool = True) -> list[str]:
    if not with_peers:
        return ["peers not run: the smoke variant runs them in s3-changed only"]
    return [DURABLE, *peer_notes(bench, "rclone", "aws")]


# -- cases -------------------------------------------------------------------------------


def run_first_small(bench: Bench, case: Case) -> dict:
    tools = Tools(bench, bucket(bench, "bench-small", "small"))
    with_peers = not bench.smoke
    runs = rounds(bench, case, tools.sides({}, fresh=True, with_peers=with_peers))
    _check_counts(runs, len(bench.corpus("small").files))
    res = result(case, runs, met=None, objects=len(bench.corpus("small").files), notes=_needs(bench, with_peers),
                 checks=[check("wall time / rclone's", paired_ratio(runs, SUBJECT, REFERENCE), 1.0),
                         check("CPU seconds / rclone's", paired_ratio(runs, SUBJECT, REFERENCE, key="cpu_s"), 1.2)])
    if not with_peers:
        res["met"] = None
    return res


def run_latency(bench: Bench, case: Case) -> dict:
    """The first sync again, every request 50 ms later (a region away), both tools at the
    same concurrency through the same proxy."""
    name = bucket(bench, "bench-small", "small")
    delay = 0.005 if bench.smoke else DELAY_S
    proxy = DelayProxy(bench.s3().port, delay).start()
    try:
        tools = Tools(bench, name, endpoint=proxy.endpoint)
        with_peers = not bench.smoke
        runs = rounds(bench, case, tools.sides({}, fresh=True, with_peers=with_peers, aws=False))
    finally:
        proxy.stop()
    _check_counts(runs, len(bench.corpus("small").files))
    res = result(case, runs, met=None, objects=len(bench.corpus("small").files), delay_s=delay,
                 notes=[f"every request reaches moto {delay * 1000:.0f} ms after it was sent (a TCP proxy holds each "
                        "chunk the client sends; answers come straight back); ingestd `concurrency = 8`, rclone "
                        "`--transfers 8`", *_needs(bench, with_peers)],
                 checks=[check("wall time / rclone's", paired_ratio(runs, SUBJECT, REFERENCE), 1.0)])
    if not with_peers:
        res["met"] = None
    return res


def run_noop(bench: Bench, case: Case) -> dict:
    tools = Tools(bench, bucket(bench, "bench-small", "small"))
    with_peers = not bench.smoke
    dirs = tools.baseline(with_peers)
    runs = rounds(bench, case, tools.sides(dirs, fresh=False, with_peers=with_peers))
    per_object = max(run[SUBJECT]["per_object_requests"] for run in runs)
    res = result(case, runs, met=None, objects=len(bench.corpus("small").files), notes=_needs(bench, with_peers),
                 ingestd_per_object_requests=per_object)
    res["met"] = None if res["ratio"] is None else res["ratio"] <= 1.0 and per_object == 0
    return res


def run_changed(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("small")
    name = bucket(bench, "bench-small", "small")  # changed keys differ from round to round
    tools = Tools(bench, name)
    dirs = tools.baseline()
    per_run = max(2, round(len(corpus.files) * CHANGED_SHARE))
    expected: dict[int, dict] = {}

    def change(i: int) -> None:
        keys = corpus.files[(i + 1) * per_run:(i + 2) * per_run]  # disjoint keys per round
        expected[i] = bench.s3().change(name, corpus, keys, salt=i)

    sides = tools.sides(dirs, fresh=False)
    checked = {n: _checking(n, fn, dirs[n], expected) for n, fn in sides.items()}
    runs = rounds(bench, case, checked, before=change)
    caught = {n: _caught(runs, n) for n in sides}
    res = result(case, runs, met=None, objects=len(corpus.files), changed_per_run=per_run,
                 caught=caught, notes=_needs(bench))
    everything = caught[SUBJECT]["missed"] == 0
    res["met"] = None if res["ratio"] is None else res["ratio"] <= 1.0 and everything
    for n, c in caught.items():
        label = "rclone" if n == REFERENCE else n
        if c["missed"]:
            res["notes"].append(f"{label} missed {c['missed']} of {c['changes']} changes "
                                f"({c['missed_same_size']} of them same-size)")
        else:
            res["notes"].append(f"{label} caught all {c['changes']} changes (half of them same-size)")
    return res


def run_first_large(bench: Bench, case: Case) -> dict:
    tools = Tools(bench, bucket(bench, "bench-large", "large"))
    with_peers = not bench.smoke
    runs = rounds(bench, case, tools.sides({}, fresh=True, with_peers=with_peers))
    _check_counts(runs, len(bench.corpus("large").files))
    res = result(case, runs, met=None, objects=len(bench.corpus("large").files),
                 mib=round(bench.corpus("large").total_bytes / 2**20), notes=_needs(bench, with_peers))
    rss = res["summary"][SUBJECT]["rss_mib"]
    res["met"] = None if res["ratio"] is None else res["ratio"] <= 1.0 and rss <= 200
    return res


# -- checking what each tool caught ------------------------------------------------------


def _checking(name: str, side, root: Path, expected: dict[int, dict]):
    """Wrap a resync side: after it runs, look at what it holds for each changed key."""

    def run(i: int) -> dict:
        out = side(i)
        have = _ingestd_hashes(root) if name == SUBJECT else _file_hashes(root / "copy", expected[i])
        missed = [k for k, want in expected[i].items() if have.get(k) != want["sha256"]]
        out["changes"] = len(expected[i])
        out["missed"] = len(missed)
        out["missed_same_size"] = sum(expected[i][k]["same_size"] for k in missed)
        return out

    return run


def _ingestd_hashes(root: Path) -> dict[str, str]:
    """key → current sha256, from the document records (origin URIs end in the key)."""
    out = {}
    for uri, sha in ingest.current_versions(root / "state").items():
        out[uri.split("/", 3)[-1] if uri.startswith("s3://") else uri] = sha
    return out


def _file_hashes(root: Path, keys: dict) -> dict[str, str]:
    out = {}
    for key in keys:
        try:
            out[key] = hashlib.sha256((root / key).read_bytes()).hexdigest()
        except FileNotFoundError:
            pass
    return out


def _caught(runs: list[dict], name: str) -> dict:
    rows = [run[name] for run in runs if name in run]
    return {"changes": sum(r["changes"] for r in rows), "missed": sum(r["missed"] for r in rows),
            "missed_same_size": sum(r["missed_same_size"] for r in rows)}


def _check_counts(runs: list[dict], objects: int) -> None:
    for run in runs:
        got = run[SUBJECT]["ingested"] + run[SUBJECT]["unchanged"]
        if got != objects:
            raise RuntimeError(f"ingestd took {got} of {objects} objects")


FIRST_SMALL = Case("s3-first-small", "S3 first sync, small corpus",
                   "`rclone copy --fast-list --use-server-modtime --update --transfers 8`",
                   "<= 1.0x wall, <= 1.2x CPU", run_first_small, needs_s3=True)
PROXIED = Case("s3-latency", "S3 first sync, small corpus, 50 ms added to every request (a delay proxy)",
               "the same rclone command through the same proxy", "<= 1.0x", run_latency, needs_s3=True)
NOOP = Case("s3-noop", "S3 no-op resync, small corpus", "the same rclone command",
            "<= 1.0x, and no request per object", run_noop, needs_s3=True)
CHANGED = Case("s3-changed", "S3 resync after 1% of objects changed (half of them same-size)",
               "the same rclone command; `aws s3 sync` as a second peer", "<= 1.0x, every change caught",
               run_changed, needs_s3=True)
FIRST_LARGE = Case("s3-first-large", "S3 first sync, large corpus", "the same rclone command",
                   "<= 1.0x, peak RSS <= 200 MiB", run_first_large, needs_s3=True)
