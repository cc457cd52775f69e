"""What can be migrated, and where each part stands: the state directory (core's steps)
and each configured source's directory (its connector's `state_steps`), each with its
own marker and version."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import IngestdError
from ingestd.plugin.migration import Step
from ingestd.state import marker as marker_mod, steps as core_steps
from ingestd.state.marker import Marker

# what ingestd 0.1.0 creates in a state directory it has used: without any of them (and
# without a marker) the directory is new, and is marked at the latest version directly
USED = ("documents.sqlite", "jobs", "blobs", "sources")


@dataclass(frozen=True)
class Chain:
    label: str  # "state DIR" or "source NAME (KIND)": how reports and errors name it
    root: Path
    steps: Sequence[Step]
    kind: str | None = None  # None: core's chain

    @property
    def latest(self) -> int:
        return core_steps.latest(self.steps)


@dataclass(frozen=True)
class Status:
    chain: Chain
    marker: Marker | None
    version: int
    fresh: bool  # nothing there yet (and steps to count): marked at the latest version, no step runs

    @property
    def ahead(self) -> bool:
        return self.version > self.chain.latest

    @property
    def pending(self) -> list[Step]:
        return [] if self.fresh else [s for s in self.chain.steps if s.version > self.version]

    @property
    def needs_write(self) -> bool:
        return bool(self.pending) or self.fresh


def chains(state_dir: Path, sources: Iterable, connectors: Mapping[str, type]) -> list[Chain]:
    """Core's chain, then one per configured source whose connector is loaded (a source
    whose plugin did not load is not used, and is migrated when it loads again)."""
    out = [Chain(f"state {state_dir}", state_dir, tuple(core_steps.CORE))]
    for source in sources:
        cls = connectors.get(source.kind)
        if cls is not None:
            steps = tuple(cls.state_steps)
            _check_order(steps, f"connector {source.kind!r}")
            out.append(Chain(f"source {source.name} ({source.kind})", state_dir / "sources" / source.name,
                             steps, kind=source.kind))
    return out


def _check_order(steps: Sequence[Step], owner: str) -> None:
    if [s.version for s in steps] != list(range(2, len(steps) + 2)):
        raise IngestdError(f"{owner}: state_steps must be versions 2, 3, … in order, "
                           f"got {[s.version for s in steps]}")


def survey(chains_: Iterable[Chain]) -> list[Status]:
    return [status(c) for c in chains_]


def status(chain: Chain) -> Status:
    marker = marker_mod.read(chain.root) if chain.root.is_dir() else None
    if marker is not None and (chain.kind is None or marker.kind == chain.kind):
        return Status(chain, marker, marker.schema_version, fresh=False)
    # a source whose kind changed starts over at version 1 of its new kind's steps
    fresh = marker is None and chain.latest > marker_mod.UNMARKED and _unused(chain)
    return Status(chain, marker, marker_mod.UNMARKED, fresh=fresh)


def _unused(chain: Chain) -> bool:
    if chain.kind is None:
        return not any((chain.root / name).exists() for name in USED)
    return not chain.root.is_dir() or not any(chain.root.iterdir())
