"""Text extraction (issue 21): what it costs ingestion, and what it does on its own.

burst-extract: the burst case (the small corpus dropped at once into the running daemon)
with extraction on, against the same with `extract = false` on the source. Ingestion is
timed as in `burst` (first rename → last job `succeeded`); extraction goes on after that
in its own lower-priority child processes, and may finish later. Target: within 5%.

extract-formats: extraction alone, one worker, over documents written by each format's
own library (the tests' corpus generator): files/s and MiB/s per format, each file's
time as the worker measured it (its start-up is paid once per worker and left out).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..context import Bench
from .common import REFERENCE, SUBJECT, Case, check, result, rounds
from .drop import burst_side, settle_seconds

FILES_PER_FORMAT = 40


def run_burst_extract(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("small")
    runs = rounds(bench, case, {SUBJECT: burst_side(bench, corpus, label="burst-extract-on"),
                                REFERENCE: burst_side(bench, corpus, {"extract": False}, label="burst-extract-off")})
    res = result(case, runs, met=None, files=len(corpus.files), settle_s=settle_seconds(bench), job_only=False)
    res["checks"] = [check("ingestion with extraction on / off", res["ratio"], 1.05)]
    res["met"] = res["checks"][0]["met"]
    res["notes"].append("extraction runs after each job, in child processes at nice 10; the time is ingestion's "
                        "(to the last job `succeeded`), not extraction's")
    return res


def run_formats(bench: Bench, case: Case) -> dict:
    from ingestd.extract.pool import Pool
    from ingestd.extract.protocol import Request
    from ingestd.plugin import Limits
    from ingestd.plugin.manager import Plugins
    from ingestd.store.enrich import detect_mime, read_head
    from tests.plugins.text import corpus

    per_format = 4 if bench.smoke else FILES_PER_FORMAT
    root = bench.scratch("extract-formats")
    docs = corpus.generate(root / "in", per_format=per_format)
    extractors = Plugins().load().extractors
    by_mime = {m: cls.name for cls in extractors.values() for m in cls.mime_types}
    pool = Pool(size=1, memory_mib=1024)
    rows: dict[str, dict] = {}
    try:
        pool.run(Request(str(docs[0].path), by_mime[docs[0].mime], str(root / "warm"), Limits()))  # start-up
        for n, doc in enumerate(docs):
            mime = detect_mime(read_head(doc.path), doc.path.name)
            out = root / f"out-{n}"
            started = time.monotonic()
            r = pool.run(Request(str(doc.path), by_mime[mime], str(out), Limits()))
            wall = time.monotonic() - started
            row = rows.setdefault(doc.path.suffix.lstrip("."), {"files": 0, "bytes": 0, "seconds": 0.0,
                                                                 "wall_s": 0.0, "failed": 0})
            row["files"] += 1
            row["bytes"] += doc.path.stat().st_size
            row["seconds"] += r.seconds
            row["wall_s"] += wall
            row["failed"] += 0 if r.ok else 1
    finally:
        pool.close()
    for row in rows.values():
        row["files_per_s"] = round(row["files"] / row["seconds"], 1) if row["seconds"] else None
        row["mib_per_s"] = round(row["bytes"] / 2**20 / row["seconds"], 2) if row["seconds"] else None
        row["round_trip_files_per_s"] = round(row["files"] / row["wall_s"], 1) if row["wall_s"] else None
    for name, row in sorted(rows.items()):
        bench.log(f"extract-formats {name}: {row['files_per_s']} files/s, {row['mib_per_s']} MiB/s "
                  f"({row['files']} files, {row['failed']} failed)")
    runs = [{SUBJECT: {"wall_s": sum(r["wall_s"] for r in rows.values()), "cpu_s": 0.0}}]
    res = result(case, runs, met=None, ratio=None, job_only=False, formats=rows)
    res["met"] = all(r["failed"] == 0 for r in rows.values())
    res["notes"].append("files written by python-docx, python-pptx, openpyxl, reportlab, odfpy and the standard "
                        "library from known sentences (tests/plugins/text/corpus.py); small files, so per-file "
                        "overhead dominates MiB/s")
    return res


BURST_EXTRACT = Case("burst-extract", "burst with text extraction on: ingestion time against extraction off",
                     "the same burst with `extract = false`", "<= 1.05x", run_burst_extract)
FORMATS = Case("extract-formats", "text extraction alone: files/s and MiB/s per format, one worker",
               "none (throughput)", "every file extracted", run_formats, max_runs=1, warmup=False)
