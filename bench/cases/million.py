"""A one-shot of 1,000,000 tiny files: what it holds in memory while it runs (peak RSS,
from /usr/bin/time), against `cp -r && sync` of the same files for the time it takes.
Opt-in (`--case oneshot-1m`): it makes a million files, copies them twice and takes 30-45
minutes today. It needs ~12 GiB and ~3.2 million inodes where the work directory is; on a
short disk, point `--workdir` at a tmpfs with room (RAM: each tiny file takes a page).
"""

from __future__ import annotations

import os
import shutil

from .. import corpus as corpus_mod
from ..context import Bench
from .common import REFERENCE, SUBJECT, Case, check, result, rounds
from .local import cp_sync_side, empty_side
from .scale import oneshot_figures

RSS_MIB = 300
FILES = 1_000_000
FOLDERS = 1_000
BYTES_PER_FILE = 3 * 4096 + 512  # the corpus, its copy and the store: a block each, plus folders
INODES_PER_FILE = 3.2


def room(path, files: int) -> None:
    """Refuse to start where the files would not fit, saying what to do instead."""
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    inodes = os.statvfs(path).f_favail
    need, need_inodes = files * BYTES_PER_FILE, int(files * INODES_PER_FILE)
    if free < need or (inodes and inodes < need_inodes):
        raise RuntimeError(f"{path} has {free / 2**30:.1f} GiB and {inodes:,} inodes free; {files:,} files need "
                           f"~{need / 2**30:.1f} GiB and ~{need_inodes:,} inodes: run with --workdir on a "
                           "filesystem with room (a tmpfs will do)")


def run_million(bench: Bench, case: Case) -> dict:
    files = 500 if bench.smoke else FILES
    room(bench.workdir, files)
    folders = 5 if bench.smoke else FOLDERS
    corpus = bench.drop_corpus(files, folders, min_size=16, max_size=512)
    runs = rounds(bench, case, {SUBJECT: oneshot_figures(bench, corpus, "million"),
                                REFERENCE: cp_sync_side(bench, corpus, "million"),
                                "ingestd_empty_folder": empty_side(bench)})
    res = result(case, runs, met=None, files=files, folders=folders)
    peak = res["summary"][SUBJECT]["rss_mib"]
    base = res["summary"]["ingestd_empty_folder"]["rss_mib"]
    res["checks"] = [check("peak RSS", peak, RSS_MIB, unit="MiB")]
    res["met"] = res["checks"][0]["met"]
    res["rss_per_file_bytes"] = round((peak - base) * 2**20 / files)
    res["notes"] += [f"{files:,} files of 16-512 bytes in {folders:,} folders, every one unique",
                     f"peak RSS {peak:.0f} MiB against {base:.0f} MiB for an empty one-shot: "
                     f"{res['rss_per_file_bytes']:,} bytes per file held"]
    return res


MILLION = Case("oneshot-1m", "one-shot of 1,000,000 tiny files: peak memory", "`cp -r` + `sync`",
               f"peak RSS <= {RSS_MIB} MiB", run_million, opt_in=True, max_runs=1, warmup=False)
