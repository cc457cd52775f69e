"""The benchmark harness, run in its smoke variant by `make test` so it cannot rot: every
case must run end to end on tiny corpora and give a well-formed result, and nothing may
be written into the repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tools
from bench.cases import ALL, DEFAULT
from bench.cases.s3 import Tools
from bench.context import Bench
from tests.support.helpers import ROOT

# rows: a case measuring several of issue 20's targets in one set of rounds gives a row each
EXTRA_ROWS = {"burst-20k": ["oneshot-20k", "drop-nesting", "scale-20k"], "cluster-scale": ["cluster-scale-direct"]}
ROW_NAMES = [name for case in ALL for name in [case.name, *EXTRA_ROWS.get(case.name, [])]]
NEEDS_S3 = {case.name for case in ALL if case.needs_s3}
PER_FILE = {"scale-20k", "scale-100k"}


def repo_files() -> set[Path]:
    return {p for p in (ROOT / "bench").rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_smoke_gives_a_well_formed_result_for_every_case(tmp_path: Path):
    before = repo_files()
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--quiet", "--json", str(out), "--workdir", str(tmp_path / "w")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,  # ~35 s quiet; minutes on a busy machine
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    record = json.loads(out.read_text())
    assert [r["case"] for r in record["cases"]] == ROW_NAMES  # opt-in cases too, on tiny inputs
    for result in record["cases"]:
        check_result(result)
    assert record["machine"]["cores"]
    assert record["settings"] == {"runs": 1, "warmup": 0, "smoke": True, "after": "move"}
    assert "| case | ingestd | reference | ratio | CPU ratio | job-only | target | met |" in done.stdout
    assert repo_files() == before, "the smoke run wrote into the repository"


def check_result(r: dict) -> None:
    name = r["case"]
    if r["status"] == "skipped":
        assert (name in NEEDS_S3 and "s3 connector" in r["reason"]) or (name == "dashboard" and r["reason"]) or (
            name.startswith("cluster-scale") and "PostgreSQL is not installed" in r["reason"]), r
        return
    assert r["status"] == "ok", f"{name}: {r.get('reason')}\n{r.get('traceback', '')}"
    assert len(r["runs"]) == 1 and isinstance(r["met"], bool | None), r
    subject = r["summary"][r["subject"]]
    if name == "dashboard":  # measures page times and the daemon's CPU share, not a workload's CPU-s
        assert subject["wall_s"] > 0 and all(p["p90_ms"] >= p["p50_ms"] > 0 for p in r["pages"].values()), r
        assert set(r["cpu_cost"]) == {"overview", "jobs"} and len(r["checks"]) == len(r["pages"]) + 2, r
        return
    assert subject["cpu_s"] >= 0 and subject["wall_s"] > 0, r
    without_peers = name in NEEDS_S3 - {"cluster-scale"} and (name != "s3-changed" or tools.rclone().missing)
    for c in r["checks"] if not without_peers else []:  # every target of issue 20 is measured, even tiny
        assert c["value"] is not None and c["value"] > 0 and c["met"] is (c["value"] <= c["limit"]), (name, c)
    if name in PER_FILE:
        assert subject["per_file_ms"] >= 0 and subject["cpu_per_file_ms"] > 0 and len(r["checks"]) == 2, r
    elif name == "big-store":
        assert subject["ingest_p99_ms"] >= subject["ingest_p50_ms"] > 0 and subject["page_middle_ms"] > 0, r
        assert r["summary"]["reference"]["wall_s"] > 0 and len(r["checks"]) == 5, r
    elif name == "startup":
        assert r["imports_ms"]["(all imports)"] > 0 and r["checks"][0]["unit"] == "s", r
        floor = r["summary"]["mandated_imports"]  # the libraries alone: above the bare interpreter
        assert floor["cpu_s"] > r["summary"]["reference"]["cpu_s"] and floor["wall_s"] > 0, r
    elif name == "oneshot-1m":
        assert subject["rss_mib"] > 0 and r["checks"][0]["unit"] == "MiB", r
    if name == "drop-latency":
        assert 0 < r["p50_s"] <= r["p99_s"] and r["settle_s"] > 0
    elif name in ("feed-latency", "sink-latency"):
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["ratio"] is None and len(r["checks"]) == 1, r
    elif name == "feed-read":
        assert r["changes_per_s"] > 0 and subject["replayed"] > 0 and len(r["checks"]) == 3, r
        assert isinstance(r["ratio"], float) and r["ratio"] > 0, r
    elif name == "idle":
        assert subject["current_rss_mib"] > 0 and r["ratio"] is None
    elif name == "extract-formats":  # throughput alone, no reference: a row per format instead
        assert r["ratio"] is None and r["met"] is True and len(r["formats"]) >= 10, r
        assert all(f["files"] > 0 and f["failed"] == 0 and f["files_per_s"] > 0 for f in r["formats"].values()), r
    elif without_peers:
        assert r["ratio"] is None and r["met"] is None, r  # the smoke variant runs peers in s3-changed only
    else:
        assert isinstance(r["ratio"], float) and r["ratio"] > 0, r
    if name in NEEDS_S3:
        assert subject["per_object_requests"] >= 0 and subject["moto_cpu_s"] >= 0
    if name == "s3-changed":
        assert r["caught"]["ingestd"]["missed"] == 0, r["caught"]


def test_missing_peers_drop_only_their_columns(tmp_path: Path, monkeypatch):
    """Without rclone and aws the S3 cases still run ingestd, and say how to install them."""
    monkeypatch.setenv("BENCH_RCLONE", str(tmp_path / "no-rclone"))
    monkeypatch.setenv("BENCH_AWS", str(tmp_path / "no-aws"))
    bench = Bench(tmp_path, runs=1, warmup=0, smoke=True, quiet=True)
    sides = Tools(bench, "bucket").sides({}, fresh=True)
    assert list(sides) == ["ingestd"]
    for name in ("rclone", "aws"):
        assert bench.tool(name).missing == f"{name} not found; install it with: {tools.INSTALL}"


def test_opt_in_cases_run_only_when_named():
    """`make bench` must stay a run of reasonable length: the million-file case is asked for."""
    names = [case.name for case in DEFAULT]
    assert "oneshot-1m" not in names and {"burst-20k", "scale-100k", "big-store", "s3-latency", "startup"} <= set(names)
    assert [case.name for case in ALL if case.opt_in] == ["oneshot-1m", "dashboard", "cluster-scale"]
