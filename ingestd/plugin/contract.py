"""What a connector class must declare, checked once when its plugin registers it.

A mistake found here refuses that kind with a reason every surface shows (`ingestd
plugins`, `check-config`, `/sources`, `/healthz`), instead of an AttributeError in
whichever command first touches the class, or a failure at its first job.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from ingestd.plugin.connector import Connector, Requirement
from ingestd.plugin.migration import Step
from ingestd.plugin.options import ScheduleOptions

KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def problems(cls: type[Connector]) -> list[str]:
    """Why `cls` cannot work as a connector (empty when it can)."""
    out = [*_kind(cls), *_options(cls), *_methods(cls), *_extras(cls)]
    contract = getattr(cls, "contract_problem", None)  # a richer contract's own check (watched)
    if callable(contract):
        problem = contract()
        if problem:
            out.append(problem)
    return out


def _kind(cls) -> list[str]:
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        return [f"kind must be a name like \"my-kind\" (lower case, digits, '-', '_'), got {kind!r}"]
    return []


def _options(cls) -> list[str]:
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        return ["has no Options: set `Options = MyOptions`, a subclass of ingestd.plugin.Strict "
                "(or ScheduleOptions) listing the source's keys"]
    if not cls.watched and not issubclass(options, ScheduleOptions):
        return [f"Options ({options.__name__}) must subclass ingestd.plugin.ScheduleOptions: a scheduled "
                "source takes `every`, `cron` and `jitter`"]
    return []


def _methods(cls) -> list[str]:
    if cls.stage is Connector.stage:
        return ["does not implement stage(self, ctx)"]
    return []


def _extras(cls) -> list[str]:
    out = []
    if cls.requires is not None and not isinstance(cls.requires, Requirement):
        out.append("requires must be an ingestd.plugin.Requirement or None")
    steps = cls.state_steps
    if not isinstance(steps, (tuple, list)) or not all(isinstance(s, Step) for s in steps):
        out.append("state_steps must be a tuple of ingestd.plugin.Step")
    elif [s.version for s in steps] != list(range(2, len(steps) + 2)):
        out.append(f"state_steps must be versions 2, 3, … in order, got {[s.version for s in steps]}")
    if not isinstance(cls.description, str):
        out.append("description must be a string")
    return out
