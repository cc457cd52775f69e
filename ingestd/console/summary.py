"""The few lines a person reads after a job: what happened, how fast, what went wrong
(grouped by code, a few items each), where the originals went, and where to see the rest."""

from __future__ import annotations

import shlex
from itertools import groupby
from pathlib import Path

from ingestd.console.render import count, size
from ingestd.jobs.manifest import JobError, Manifest

FIRST = 3  # items shown per error code


def summary(m: Manifest, state_dir: Path, config: str | None = None) -> list[str]:
    lines = [_headline(m), _counts(m)]
    lines += _errors(m)
    lines += _originals(m, state_dir)
    option = f" --config {shlex.quote(config)}" if config else ""
    lines.append(f"  all items: ingestd status {m.job_id} --items{option}")
    return lines


def _headline(m: Manifest) -> str:
    took = m.duration_s()
    return f"job {m.job_id}  source {m.source} ({m.kind})  {m.status}" + (
        f" in {took:.1f} s" if took is not None else "")


def _counts(m: Manifest) -> str:
    c = m.counters
    parts = [f"{count(c.ingested)} ingested", f"{count(c.unchanged)} unchanged", f"{count(c.skipped)} skipped",
             f"{count(c.failed)} failed"]
    parts += [f"{count(n)} {name}" for name, n in (("deleted", c.deleted), ("filtered out", c.filtered)) if n]
    taken = c.ingested + c.unchanged + c.skipped + c.failed + c.deleted
    took = m.duration_s()
    rate = f" at {size(c.bytes / took)}/s, {count(taken / took)} items/s" if took and took >= 0.05 and taken else ""
    return f"  {', '.join(parts)}; {size(c.bytes)} stored{rate}"


def _errors(m: Manifest) -> list[str]:
    if not m.errors:
        return []
    out = ["  errors:"]
    ordered = sorted(m.errors, key=lambda e: e.code.value)
    for code, group in groupby(ordered, key=lambda e: e.code.value):
        out += _group(code, list(group))
    if m.errors_dropped:
        out.append(f"    … and {count(m.errors_dropped)} more errors the manifest does not list")
    return out


def _group(code: str, errors: list[JobError]) -> list[str]:
    first = errors[0]
    if len(errors) == 1:
        return [f"    {code}: {first.message}" + (f"  [{first.item}]" if first.item else "")]
    out = [f"    {code} ({len(errors)}): {first.message}"]
    items = [e.item for e in errors if e.item]
    out += [f"      {item}" for item in items[:FIRST]]
    if len(items) > FIRST:
        out.append(f"      … and {len(items) - FIRST} more")
    return out


def _originals(m: Manifest, state_dir: Path) -> list[str]:
    """Where the drop-folder connector put the originals (the state dir's layout,
    docs/connectors/local.md: `processed|failed/<source>/<job_id>`), when it moved any."""
    out = []
    for area, what in (("processed", "taken"), ("failed", "refused, each with a .error.json")):
        folder = state_dir / area / m.source / m.job_id
        if folder.is_dir():
            out.append(f"  originals {what}: {folder}")
    return out
