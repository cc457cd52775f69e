"""What every case is made of: a description, paired rounds, and a result record.

A round runs every side once (ingestd, its reference, any peers), rotating which goes
first, so no side always runs on a cache the other warmed or a disk the other dirtied.
The first `warmup` rounds are run and thrown away. A long case may take fewer rounds
(`max_runs`) and no warm-up; an `opt_in` case runs only when named (`--case NAME`), or
on tiny inputs in the smoke variant.

A case with several targets returns `checks` (each a measured value against its limit);
a case that measures several of the issue's targets at once may return several rows.
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
    run: Callable[[Bench, "Case"], dict | list[dict]]
    needs_s3: bool = False
    opt_in: bool = False  # long: runs only when named with --case (and, tiny, in the smoke variant)
    max_runs: int | None = None  # at most this many measured rounds, whatever --runs says
    warmup: bool = True  # False: no warm-up round (a long case whose inputs were just made)


Side = Callable[[int], dict | None]


def rounds(bench: Bench, case: Case, sides: dict[str, Side],
           before: Callable[[int], object] | None = None) -> list[dict]:
    """Warm-up rounds, then `bench.runs` measured rounds; returns the measured ones."""
    names = list(sides)
    out = []
    warmup, runs = round_counts(bench, case)
    for i in range(warmup + runs):
        if before is not None:
            before(i)
        k = i % len(names)
        row = {}
        for name in names[k:] + names[:k]:
            measured = sides[name](i)
            if measured is not None:
                row[name] = measured
        label = "warm-up" if i < warmup else f"run {i - warmup + 1}/{runs}"
        shown = ", ".join(f"{n} {row[n]['wall_s']:.3f}s" for n in names if n in row and "wall_s" in row[n])
        bench.log(f"{case.name} {label}: {shown}")
        if i >= warmup:
            out.append(row)
    return out


def round_counts(bench: Bench, case: Case) -> tuple[int, int]:
    """(warm-up rounds, measured rounds) for this case."""
    runs = min(bench.runs, case.max_runs) if case.max_runs else bench.runs
    return (bench.warmup if case.warmup else 0), runs


def check(name: str, value: float | None, limit: float, unit: str = "x") -> dict:
    """One target: a measured value against its upper limit (None: not measured)."""
    return {"name": name, "value": None if value is None else round(value, 4), "limit": limit, "unit": unit,
            "met": None if value is None else value <= limit}


def all_met(checks: list[dict]) -> bool | None:
    """Met when every check is; None when any could not be measured."""
    if any(c["met"] is None for c in checks):
        return None
    return all(c["met"] for c in checks)


def result(case: Case, runs: list[dict], *, met: bool | None, ratio: float | None = "paired",
           notes: list[str] | None = None, checks: list[dict] | None = None, name: str | None = None,
           title: str | None = None, reference: str | None = None, target: str | None = None,
           subject: str = SUBJECT, against: str = REFERENCE, cpu_key: str = "cpu_s", job_only: bool = True,
           **extra) -> dict:
    """The record a case returns: medians per side, the ratio (wall time) and the CPU
    ratio (CPU seconds), both paired, and whether the target is met. `name`, `title`,
    `reference`, `target`, `subject` and `against` make another row from the same rounds;
    `cpu_key` names the CPU figure to pair (CPU per file, for a per-file ratio)."""
    sides = sorted({name for run in runs for name in run})
    if ratio == "paired":
        ratio = paired_ratio(runs, subject, against)
    cpu_ratio = paired_ratio(runs, subject, against, key=cpu_key)
    summary = {side: side_summary(runs, side) for side in sides}
    notes = list(notes or [])
    job_ratio = paired_ratio(runs, subject, against, key="job_s", against="wall_s") if job_only else None
    if job_ratio is not None:
        notes.insert(0, f"ingestd's job alone (manifest started_at → finished_at: no interpreter start-up, "
                        f"imports or plugin loading) took {summary[subject]['job_s']:.3f} s: "
                        f"{job_ratio:.2f}x the reference")
    if checks and met is None:
        met = all_met(checks)
    return {
        "case": name or case.name, "title": title or case.title, "reference": reference or case.reference,
        "target": target or case.target, "status": "ok", "runs": runs, "summary": summary,
        "subject": subject, "against": against,
        "ratio": round(ratio, 3) if isinstance(ratio, float) else ratio,
        "cpu_ratio": round(cpu_ratio, 3) if cpu_ratio is not None else None,
        "job_ratio": round(job_ratio, 3) if job_ratio is not None else None,
        "met": met, "checks": checks or [], "notes": notes, **extra,
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
