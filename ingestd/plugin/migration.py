"""One step of a state migration: what core and plugins declare to move their files forward.

Core's steps (`ingestd.state.steps`) run on the state directory; a connector's steps
(`Connector.state_steps`) run on each of its sources' own directory (`sources/<name>/`),
so a plugin versions its cursors and memory without core knowing their layout.

A step must be safe to kill at any instant and safe to run again: the runner records a
step as done only after it returns, so a step killed after its last write runs once more
on the next start. The easy way: do the whole step in one SQLite transaction and make it
a no-op when its result is already there (`CREATE TABLE IF NOT EXISTS`, `INSERT OR
IGNORE`, a check of what is present); files go through `ingestd.plugin.kit`'s atomic
writes. When `apply` returns, what it wrote must be durable (committed, fsynced).

A source's steps run when ingestd starts (or `ingestd migrate`), for every configured
source of the connector's kind; a source added by a config reload is migrated at the
next start, so its connector must cope with an unmigrated directory until then (or the
operator restarts instead of reloading).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepContext:
    """What a step gets: the directory it migrates (the state directory for core, the
    source's directory for a connector), a logger, and `progress`, to call now and then
    in a long step (it keeps a service manager from timing out the start)."""

    root: Path
    log: Any
    progress: Callable[[str], None] = field(default=lambda note: None)


@dataclass(frozen=True)
class Step:
    """Moves one schema from `version - 1` to `version`. A state without a version
    marker is version 1 (what ingestd 0.1.0 wrote), so the first step is version 2.

    `read_safe`: this code reads the layout from before the step correctly, so a
    read-only command (`ingestd jobs`, `document`, …) may read a state on which this step
    is still pending instead of refusing. Leave it False unless that is certain."""

    version: int
    name: str
    summary: str
    apply: Callable[[StepContext], None]
    read_safe: bool = False
