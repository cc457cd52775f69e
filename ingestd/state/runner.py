"""Bringing a state forward before anything uses it, and refusing one from the future.

`open_state` is the one door: the daemon and one-shot commands pass `write=True` and
get the state migrated (under the exclusive lock, step by step, each recorded in its
marker only once durable, so a kill at any instant leaves a state the next start
finishes); read-only commands never write, and read only when every pending step says
this code reads the older layout (`Step.read_safe`). Either way the caller holds the
lock shared until it closes, so no migration starts under it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingestd._lib import logs
from ingestd._lib.version import VERSION
from ingestd.errors import MigrationPending, SchemaTooNew
from ingestd.plugin.migration import StepContext
from ingestd.state import marker as marker_mod
from ingestd.state.chains import Chain, Status, survey
from ingestd.state.lock import StateLock
from ingestd.state.marker import Applied, Marker

LOCK_WAIT = 30.0  # for users of the state (read-only commands are brief) to let go


@dataclass
class Opened:
    """The state, ready to use; `done` says what this call migrated, one line each."""

    lock: StateLock
    done: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.lock.release()


def open_state(state_dir, chains_: Sequence[Chain], *, write: bool,
               progress: Callable[[str], None] = lambda note: None) -> Opened:
    lock = StateLock(state_dir)
    lock.shared()
    try:
        statuses = checked(chains_)
        todo = [s for s in statuses if s.needs_write]
        if not todo:
            return Opened(lock)
        if not write:
            _readable_or_refuse(state_dir, todo)
            return Opened(lock)
        lock.release()
        lock.exclusive(LOCK_WAIT)
        done = [line for s in checked(chains_) if s.needs_write for line in apply(s, progress)]
        lock.downgrade()
        return Opened(lock, done)
    except BaseException:
        lock.release()
        raise


def checked(chains_: Sequence[Chain]) -> list[Status]:
    """Where each chain stands; refuses a state written by a newer ingestd."""
    statuses = survey(chains_)
    ahead = [s for s in statuses if s.ahead]
    if ahead:
        raise SchemaTooNew("; ".join(too_new(s) for s in ahead))
    return statuses


def too_new(s: Status) -> str:
    return (f"{s.chain.label} is at schema {s.version}, newer than this ingestd ({VERSION}) knows "
            f"(up to {s.chain.latest}): it was written by a newer ingestd. Run that version, or restore "
            "the backup taken before it (downgrades are not supported; see docs/upgrading.md)")


def _readable_or_refuse(state_dir, todo: list[Status]) -> None:
    blocking = [f"{step.version} {step.name}" for s in todo for step in s.pending if not step.read_safe]
    if blocking:
        raise MigrationPending(
            f"{state_dir}: the state must be migrated before it can be read (pending: {', '.join(blocking)}); "
            "run `ingestd migrate` (or start the daemon), which migrates it; read-only commands never do")


def apply(s: Status, progress: Callable[[str], None]) -> list[str]:
    """Run `s`'s pending steps in order; what was done, one line each."""
    chain = s.chain
    log = logs.get("ingestd.state", chain=chain.label)
    chain.root.mkdir(parents=True, exist_ok=True, mode=0o750)
    marker_mod.remove_torn_writes(chain.root)
    if s.fresh:
        created = Applied(version=chain.latest, step="created")
        marker_mod.write(chain.root, Marker(schema=chain.latest, kind=chain.kind, created=created))
        log.info("state marked at its schema", schema=chain.latest)
        return [f"{chain.label}: new, marked at schema {chain.latest}"]
    marker = (s.marker.model_copy(deep=True) if s.marker is not None and s.marker.kind == chain.kind
              else Marker(schema=s.version, kind=chain.kind))
    done = []
    for step in s.pending:
        progress(f"migrating {chain.label}: step {step.version} {step.name}")
        log.info("migration step starting", step=step.name, schema_from=marker.schema_version, schema_to=step.version)
        started = time.monotonic()
        step.apply(StepContext(chain.root, log.bind(step=step.name), progress))
        marker.schema_version = step.version
        marker.history.append(Applied(version=step.version, step=step.name))
        marker_mod.write(chain.root, marker)  # the step counts as done only from here
        took = round(time.monotonic() - started, 3)
        log.info("migration step applied", step=step.name, schema=step.version, seconds=took)
        done.append(f"{chain.label}: applied {step.version} {step.name} ({took} s)")
    return done
