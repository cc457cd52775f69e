"""Option groups connectors share, so `every`, `include` or `on_delete` mean the same
thing in every source that accepts them."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ingestd.config import Duration, Strict


class ScheduleOptions(Strict):
    """When a remote source is polled: `every` or `cron` (UTC), plus random `jitter`."""

    every: Duration | None = None
    cron: str | None = None
    jitter: Duration = 0.0

    @field_validator("every")
    @classmethod
    def _every_floor(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("cron")
    @classmethod
    def _cron_valid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}; write e.g. '*/5 * * * *'") from None
        return value

    @model_validator(mode="after")
    def _one_schedule(self):
        if self.every is not None and self.cron is not None:
            raise ValueError("set either 'every' or 'cron', not both")
        return self

    def schedule_text(self) -> str:
        if self.cron:
            return f"cron {self.cron}"
        return f"every {int(self.every or DEFAULT_EVERY)}s"


DEFAULT_EVERY = 900.0


class FilterOptions(Strict):
    """Glob filters on the item's path relative to the source (`**` crosses folders)."""

    include: list[str] = Field(default_factory=lambda: ["**"])
    exclude: list[str] = Field(default_factory=list)

    def wanted(self, relpath: str) -> bool:
        return any(_glob(relpath, p) for p in self.include) and not any(_glob(relpath, p) for p in self.exclude)


def _glob(relpath: str, pattern: str) -> bool:
    if pattern in ("**", "*"):
        return True if pattern == "**" else "/" not in relpath
    if pattern.startswith("**/"):
        rest = pattern[3:]
        parts = relpath.split("/")
        return any(fnmatchcase("/".join(parts[i:]), rest) for i in range(len(parts)))
    return fnmatchcase(relpath, pattern)


class DeleteOptions(Strict):
    """What a source does when an item it delivered earlier disappears."""

    on_delete: Literal["tombstone", "ignore"] = "tombstone"
    max_delete_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
