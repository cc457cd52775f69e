"""`python -m bench`: run the cases, print the table, write the results.

    python -m bench                    every case but the opt-in ones (the full run; writes bench/RESULTS.md)
    python -m bench --case burst       one case (repeatable; opt-in cases too); JSON only
    python -m bench --runs 7           measured rounds per case (default 5, after 1 warm-up)
    python -m bench --smoke            tiny corpora, one round, nothing written in the repo

Exit status: 0 when every case ran (met or not: this measures, it does not judge), 1 when
a case failed to run, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import ingest, machine, measure, report
from .cases import ALL, BY_NAME, DEFAULT
from .cases.common import failed, skipped
from .cases.s3 import connector_problem
from .context import Bench

HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description="ingestd benchmarks (issue 7)")
    p.add_argument("--smoke", action="store_true", help="tiny corpora, one round, writes nothing in the repo")
    p.add_argument("--case", action="append", choices=list(BY_NAME), metavar="NAME",
                   help="run only this case (repeatable): " + ", ".join(
                       c.name + (" (opt-in, long)" if c.opt_in else "") for c in ALL))
    p.add_argument("--runs", type=int, help="measured rounds per case (default 5; 1 with --smoke)")
    p.add_argument("--warmup", type=int, help="warm-up rounds per case (default 1; 0 with --smoke)")
    p.add_argument("--after", choices=["move", "delete", "keep"], default="move",
                   help="what the drop-folder cases do with an ingested original (default: move, "
                        "ingestd's default); compare to see what moving files out of a watched folder costs")
    p.add_argument("--workdir", type=Path, help="where corpora and stores go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument("--json", type=Path, help="write the JSON record here instead of bench/results/")
    p.add_argument("--markdown", type=Path, help="write the Markdown table here (default: bench/RESULTS.md "
                                                  "for a full run, nowhere otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runs = args.runs or (1 if args.smoke else 5)
    warmup = args.warmup if args.warmup is not None else (0 if args.smoke else 1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingestd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(workdir, runs=runs, warmup=warmup, smoke=args.smoke, quiet=args.quiet, after=args.after)
    # the smoke variant runs every case, opt-in ones too: on tiny inputs they are quick
    cases = [BY_NAME[name] for name in args.case] if args.case else (ALL if args.smoke else DEFAULT)
    started = time.monotonic()
    header = build_header(bench)  # before the cases: the code under test may change meanwhile
    try:
        results = run_cases(bench, cases)
        record = {**header, "elapsed_s": round(time.monotonic() - started, 1), "cases": results}
    finally:
        bench.close()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_outputs(args, record, full=not args.case and not args.smoke and args.after == "move")
    return 1 if any(r["status"] == "error" for r in results) else 0


def run_cases(bench: Bench, cases) -> list[dict]:
    s3_problem = connector_problem() if any(c.needs_s3 for c in cases) else None
    results = []
    for case in cases:
        if case.needs_s3 and s3_problem:
            bench.log(f"{case.name}: skipped: {s3_problem}")
            results.append(skipped(case, s3_problem))
            continue
        bench.log(f"{case.name}: {case.title}")
        busy, own, start = measure.machine_busy_s(), _own_cpu(bench), time.monotonic()
        try:
            rows = case.run(bench, case)
            rows = rows if isinstance(rows, list) else [rows]  # some cases measure several targets
        except Exception as exc:  # one broken case must not cost the figures of the others
            bench.log(f"{case.name}: failed: {exc}")
            rows = [failed(case, f"{type(exc).__name__}: {exc}")]
            rows[0]["traceback"] = traceback.format_exc()
        load = _load(bench, busy, own, start)
        for row in rows:
            row["machine_load"] = load
        results.extend(rows)
    return results


def _own_cpu(bench: Bench) -> float:
    """CPU of this harness, every child it has reaped, and the S3 server it runs."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = bench.s3_cpu_s()
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + server


def _load(bench: Bench, busy_before: float, own_before: float, start: float) -> dict:
    """How busy the machine was during a case, and how much of that was not us: on a
    shared machine, a case measured while something else ran is marked in the report."""
    elapsed = time.monotonic() - start
    busy = measure.machine_busy_s() - busy_before
    own = _own_cpu(bench) - own_before
    return {"elapsed_s": round(elapsed, 1), "busy_cores": round(busy / elapsed, 2),
            "other_cores": round(max(0.0, busy - own) / elapsed, 2), "loadavg_1m": round(os.getloadavg()[0], 2)}


def build_header(bench: Bench) -> dict:
    tools = {"ingestd": _ingestd_version()}
    for name, tool in bench.tools.items():
        tools[name] = tool.version or f"missing ({tool.install})"
    tools["moto"] = importlib.metadata.version("moto")
    return {"machine": machine.describe(bench.workdir), "tools": tools,
            "settings": {"runs": bench.runs, "warmup": bench.warmup, "smoke": bench.smoke, "after": bench.after}}


def _ingestd_version() -> str:
    version = importlib.metadata.version("ingestd")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # the code under test only: new or changed files in core and the plugins
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ingestd", "plugins", "pyproject.toml"],
                               cwd=HERE.parent, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    how = "as a user installs it, `pip install '.[s3,sharepoint,text,cluster]'`" if ingest.INSTALLED else "from the dev venv"
    return f"{version} @ {commit}{' + uncommitted changes' if dirty else ''}, {how}" if commit else version


def write_outputs(args, record: dict, full: bool) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.json
    if json_path is None and not args.smoke:
        json_path = HERE / "results" / f"{stamp}.json"
    if json_path is not None:
        report.write_json(json_path, record)
    md_path = args.markdown or (HERE / "RESULTS.md" if full else None)
    name = json_path.name if json_path is not None and json_path.parent == HERE / "results" else None
    text = report.markdown(record, name, kept=report.kept_text(md_path) if md_path else "")
    if md_path is not None:
        md_path.write_text(text)
    print(text.split("\n## Details", 1)[0])
    if json_path is not None:
        print(f"JSON: {json_path}", file=sys.stderr)
    if md_path is not None:
        print(f"Markdown: {md_path}", file=sys.stderr)
