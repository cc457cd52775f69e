"""The few statistics the report needs. Medians, not means: one run disturbed by the
machine (a flush, a page-cache eviction) must not move the headline figure."""

from __future__ import annotations

import statistics


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def paired_ratio(runs: list[dict], subject: str, reference: str, key: str = "wall_s",
                 against: str | None = None) -> float | None:
    """Median of the per-run ratios subject[key] / reference[against or key]: each pair ran
    back to back on the same machine state, so drift between pairs cancels out."""
    against = against or key
    ratios = []
    for run in runs:
        a, b = run.get(subject), run.get(reference)
        if a and b and a.get(key) is not None and b.get(against):
            ratios.append(a[key] / b[against])
    return median(ratios)


def side_summary(runs: list[dict], side: str) -> dict | None:
    """Median wall and CPU, highest peak RSS, and any other numeric field (median)."""
    rows = [run[side] for run in runs if run.get(side)]
    if not rows:
        return None
    keys = {k for row in rows for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {}
    for key in sorted(keys):
        values = [row[key] for row in rows if row.get(key) is not None]
        out[key] = max(values) if "rss" in key else median(values)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
