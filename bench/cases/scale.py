"""Issue 20's drop-folder targets: a 20,000-file folder `mv`'d into the running daemon's
drop folder, against `cp -r && sync` of the same files and the one-shot of them; the same
files flat instead of nested; and the per-file cost as the count grows (2,000, 20,000,
100,000 files, 20 to a folder). Every side of a case runs in every round, so each ratio
is paired.

A burst counts as done when the last job holding its files is `succeeded` *and* no file
is left in the drop folder: ingestd moves originals to `processed/` after a job's
manifest is final, and the issue's target is "durably, originals moved".
Per-file cost: the daemon's wall time less its quiet period (settle_seconds), and its CPU
seconds, divided by the number of files; for the one-shot, its job time (manifest) per file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import corpus as corpus_mod
from .. import measure
from ..context import Bench
from ..daemon import wait_until
from ..stats import paired_ratio
from .common import REFERENCE, SUBJECT, Case, check, result, rounds
from .drop import settle_seconds, start_daemon, wait_burst
from .local import cp_sync_side, oneshot_side

NOTE_DONE = ("a burst is done when its last job is `succeeded` and no file is left in the drop folder "
             "(originals moved to processed/); `moves_tail_s` is how long the moves took after that last job "
             "(polled every 20 ms)")


def sizes(bench: Bench) -> dict[str, int]:
    """The file counts the issue names, or tiny ones for the smoke variant."""
    if bench.smoke:
        return {"2k": 20, "20k": 60, "100k": 200}
    return {"2k": 2_000, "20k": 20_000, "100k": 100_000}


def daemon_side(bench: Bench, corpus: corpus_mod.Corpus, label: str, flat: bool = False):
    """The corpus, hard-linked into one folder beside the drop folder, renamed into it at once."""

    def side(i: int) -> dict:
        daemon, inbox = start_daemon(bench, label)
        try:
            batch = inbox.parent / "staging" / "batch"
            corpus_mod.link_tree(corpus, batch, flat=flat)
            measure.sync()
            with measure.Window(daemon.pid) as cpu:
                start = time.time()
                os.rename(batch, inbox / "batch")
                last_job, jobs = wait_burst(daemon, len(corpus.files), timeout=120 + 0.05 * len(corpus.files))
                emptied = wait_until(lambda: _no_files(inbox), 120, "the originals to leave the drop folder",
                                     interval=0.02, daemon=daemon)
            memory = measure.memory_mib(daemon.pid)
        finally:
            daemon.stop()
        return burst_figures(bench, len(corpus.files), start, max(last_job, emptied), cpu.cpu_s, jobs,
                             memory["peak_rss_mib"], moves_tail_s=max(0.0, emptied - last_job))

    return side


def burst_figures(bench: Bench, files: int, start: float, end: float, cpu_s: float, jobs: int,
                  rss_mib: float, **extra) -> dict:
    wall = end - start
    return {"wall_s": round(wall, 4), "cpu_s": round(cpu_s, 3), "rss_mib": round(rss_mib, 1), "jobs": jobs,
            "files_per_s": round(files / wall, 1),
            "per_file_ms": round(max(0.0, wall - settle_seconds(bench)) / files * 1000, 4),
            "cpu_per_file_ms": round(cpu_s / files * 1000, 4), **{k: round(v, 4) for k, v in extra.items()}}


def _no_files(root: Path) -> float | None:
    """The wall time now, if no regular file is left under `root` (empty folders may be)."""
    for _, _, files in os.walk(root):
        if files:
            return None
    return time.time()


def oneshot_figures(bench: Bench, corpus: corpus_mod.Corpus, label: str, flat: bool = False):
    """The one-shot side, with its job time per file (no start-up, no final moves)."""
    run = oneshot_side(bench, corpus, label, flat=flat)

    def side(i: int) -> dict:
        out = run(i)
        if out.get("job_s"):
            out["job_per_file_ms"] = round(out["job_s"] / len(corpus.files) * 1000, 4)
        out["cpu_per_file_ms"] = round(out["cpu_s"] / len(corpus.files) * 1000, 4)
        return out

    return side


def per_file_checks(runs: list[dict], big: str, small: str, label: str) -> list[dict]:
    return [
        check(f"daemon wall per file, {label} / 2k", paired_ratio(runs, big, small, key="per_file_ms"), 1.1),
        check(f"daemon CPU per file, {label} / 2k", paired_ratio(runs, big, small, key="cpu_per_file_ms"), 1.1),
    ]


# -- the 20,000-file burst -----------------------------------------------------------------


def run_burst_20k(bench: Bench, case: Case) -> list[dict]:
    n = sizes(bench)
    big, small = bench.drop_corpus(n["20k"]), bench.drop_corpus(n["2k"])
    sides = {
        SUBJECT: daemon_side(bench, big, "burst20k-daemon"),
        REFERENCE: cp_sync_side(bench, big, "burst20k"),
        "oneshot": oneshot_figures(bench, big, "burst20k-oneshot"),
        "daemon_flat": daemon_side(bench, big, "burst20k-flat", flat=True),
        "daemon_2k": daemon_side(bench, small, "burst2k-daemon"),
        "oneshot_2k": oneshot_figures(bench, small, "burst2k-oneshot"),
    }
    runs = rounds(bench, case, sides)
    files, folders = len(big.files), big.spec.folders
    shape = f"{files:,} files of 1-32 KiB in {folders:,} folders"
    vs_oneshot = paired_ratio(runs, SUBJECT, "oneshot")
    burst = result(
        case, runs, met=None, files=files, folders=folders, settle_s=settle_seconds(bench),
        checks=[check("burst / cp -r && sync (wall)", paired_ratio(runs, SUBJECT, REFERENCE), 4.0),
                check("burst / one-shot of the same files (wall)", vs_oneshot, 1.1)],
        notes=[NOTE_DONE, f"{shape}; the daemon's time includes its {settle_seconds(bench)} s quiet period, "
                          "the one-shot's its interpreter start-up"])
    oneshot = result(
        case, runs, met=None, name="oneshot-20k", title=f"one-shot durable ingest of the {files:,}-file corpus",
        reference="`cp -r` + `sync`", target="<= 4x", subject="oneshot", files=files,
        checks=[check("one-shot / cp -r && sync (wall)", paired_ratio(runs, "oneshot", REFERENCE), 4.0)],
        notes=[f"{shape}; measured in the rounds of burst-20k"])
    nesting = result(
        case, runs, met=None, name="drop-nesting", title=f"the {files:,}-file burst nested vs flat",
        reference="the same files in one folder", target="<= 1.2x", against="daemon_flat", files=files,
        checks=[check("nested / flat (wall)", paired_ratio(runs, SUBJECT, "daemon_flat"), 1.2),
                check("nested / flat (CPU)", paired_ratio(runs, SUBJECT, "daemon_flat", key="cpu_s"), 1.2)],
        notes=[f"nested: {shape}; flat: the same files in one folder; measured in the rounds of burst-20k", NOTE_DONE])
    scale = result(
        case, runs, met=None, name="scale-20k", title=f"per-file cost of a {files:,}-file burst vs {len(small.files):,}",
        reference=f"the {len(small.files):,}-file burst", target="<= 1.1x per file", against="daemon_2k",
        ratio=paired_ratio(runs, SUBJECT, "daemon_2k", key="per_file_ms"), cpu_key="cpu_per_file_ms",
        checks=per_file_checks(runs, SUBJECT, "daemon_2k", "20k"),
        notes=[f"20 files per folder at both sizes; the ratio is of wall time per file less the quiet period; "
               f"one-shot job time per file: {_per_file(runs, 'oneshot', 'oneshot_2k')}",
               "measured in the rounds of burst-20k"])
    return [burst, oneshot, nesting, scale]


def _per_file(runs: list[dict], big: str, small: str) -> str:
    ratio = paired_ratio(runs, big, small, key="job_per_file_ms")
    return "-" if ratio is None else f"{ratio:.2f}x"


# -- 100,000 files -------------------------------------------------------------------------


def run_scale_100k(bench: Bench, case: Case) -> dict:
    n = sizes(bench)
    big, small = bench.drop_corpus(n["100k"]), bench.drop_corpus(n["2k"])
    sides = {
        SUBJECT: daemon_side(bench, big, "scale100k-daemon"),
        REFERENCE: daemon_side(bench, small, "scale2k-daemon"),
        "oneshot_100k": oneshot_figures(bench, big, "scale100k-oneshot"),
        "oneshot_2k": oneshot_figures(bench, small, "scale2k-oneshot"),
        "cp_sync_100k": cp_sync_side(bench, big, "scale100k"),
    }
    runs = rounds(bench, case, sides)
    return result(
        case, runs, met=None, ratio=paired_ratio(runs, SUBJECT, REFERENCE, key="per_file_ms"), cpu_key="cpu_per_file_ms",
        files=len(big.files), folders=big.spec.folders,
        checks=per_file_checks(runs, SUBJECT, REFERENCE, "100k"),
        notes=[f"{len(big.files):,} files in {big.spec.folders:,} folders against {len(small.files):,} in "
               f"{small.spec.folders:,}; the ratio is of wall time per file less the quiet period",
               f"one-shot job time per file, 100k / 2k: {_per_file(runs, 'oneshot_100k', 'oneshot_2k')}",
               f"burst / cp -r && sync at 100k: {_fmt(paired_ratio(runs, SUBJECT, 'cp_sync_100k'))}; "
               f"one-shot / cp -r && sync: {_fmt(paired_ratio(runs, 'oneshot_100k', 'cp_sync_100k'))}",
               NOTE_DONE])


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


BURST_20K = Case("burst-20k", "burst: a 20,000-file folder (1,000 subfolders) `mv`'d into the running daemon",
                 "`cp -r` + `sync`; the one-shot of the same files", "<= 4x cp; <= 1.1x the one-shot",
                 run_burst_20k, max_runs=3, warmup=False)
SCALE_100K = Case("scale-100k", "per-file cost of a 100,000-file burst (5,000 subfolders) vs 2,000",
                  "the 2,000-file burst (100 subfolders)", "<= 1.1x per file", run_scale_100k,
                  max_runs=2, warmup=False)
