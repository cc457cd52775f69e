"""What every case is made of: a description, paired rounds, and a result record.

A round runs every side once (ingestd, its reference, any peers), rotating which goes
first, so no side always runs on a cache the other warmed or a disk the other dirtied.
The first `warmup` rounds are run and thrown away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..context import Bench
from ..stats import paired_ratio, side_summary

SUBJECT = "ingestd"
REFERENCE = "reference"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    reference: str
    target: str
    run: Callable[[Bench, "Case"], dict]
    needs_s3: bool = False


Side = Callable[[int], dict | None]


def rounds(bench: Bench, case: Case, sides: dict[str, Side],
           before: Callable[[int], object] | None = None) -> list[dict]:
    """Warm-up rounds, then `bench.runs` measured rounds; returns the measured ones."""
    names = list(sides)
    out = []
    for i in range(bench.warmup + bench.runs):
        if before is not None:
            before(i)
        k = i % len(names)
        row = {}
        for name in names[k:] + names[:k]:
            measured = sides[name](i)
            if measured is not None:
                row[name] = measured
        label = "warm-up" if i < bench.warmup else f"run {i - bench.warmup + 1}/{bench.runs}"
        shown = ", ".join(f"{n} {row[n]['wall_s']:.3f}s" for n in names if n in row and "wall_s" in row[n])
        bench.log(f"{case.name} {label}: {shown}")
        if i >= bench.warmup:
            out.append(row)
    return out


def result(case: Case, runs: list[dict], *, met: bool | None, ratio: float | None = "paired",
           notes: list[str] | None = None, **extra) -> dict:
    """The record a case returns: medians per side, the ratio, whether the target is met."""
    sides = sorted({name for run in runs for name in run})
    if ratio == "paired":
        ratio = paired_ratio(runs, SUBJECT, REFERENCE)
    summary = {side: side_summary(runs, side) for side in sides}
    notes = list(notes or [])
    job_ratio = paired_ratio(runs, SUBJECT, REFERENCE, key="job_s", against="wall_s")
    if job_ratio is not None:
        notes.insert(0, f"ingestd's job alone (manifest started_at → finished_at: no interpreter start-up, "
                        f"imports or plugin loading) took {summary[SUBJECT]['job_s']:.3f} s: "
                        f"{job_ratio:.2f}x the reference")
    return {
        "case": case.name, "title": case.title, "reference": case.reference, "target": case.target,
        "status": "ok", "runs": runs, "summary": summary,
        "ratio": round(ratio, 3) if isinstance(ratio, float) else ratio,
        "job_ratio": round(job_ratio, 3) if job_ratio is not None else None,
        "met": met, "notes": notes, **extra,
    }


def skipped(case: Case, reason: str) -> dict:
    return {"case": case.name, "title": case.title, "reference": case.reference, "target": case.target,
            "status": "skipped", "reason": reason}


def failed(case: Case, message: str) -> dict:
    return {"case": case.name, "title": case.title, "reference": case.reference, "target": case.target,
            "status": "error", "reason": message}


def peer_notes(bench: Bench, *names: str) -> list[str]:
    """One line per missing peer, carrying the exact install command."""
    return [bench.tool(n).missing for n in names if bench.tool(n).missing]
