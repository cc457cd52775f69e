"""The job manifest: a job's whole public record (what started it, when, what it counted,
what went wrong), written as one JSON file per job and rewritten on every transition."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingestd._lib import redact
from ingestd._lib.times import Timestamp, now_iso, parse_iso
from ingestd.errors import Code

Status = Literal["queued", "running", "succeeded", "partial", "failed"]
Trigger = Literal["watch", "schedule", "api", "cli", "recovery"]
TERMINAL = ("succeeded", "partial", "failed")
MAX_ERRORS = 100


class Counters(BaseModel):
    discovered: int = 0
    ingested: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    filtered: int = 0  # listed by the source, left out by include/exclude (no item, no error)
    bytes: int = 0


class JobError(BaseModel):
    code: Code
    message: str
    item: str | None = None
    at: Timestamp = Field(default_factory=now_iso)
    request_id: str | None = None

    @field_validator("message")
    @classmethod
    def _masked(cls, message: str) -> str:
        """Free text is masked where it is made, so memory, disk and API say the same."""
        return redact.scrub_text(message)


class LiveProgress(BaseModel):
    """How far a running job has got (None once it has finished: the counters say it all).
    Refreshed in memory as work happens and in the manifest file about once a second."""

    phase: str
    items_done: int = 0
    items_total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    updated_at: Timestamp = Field(default_factory=now_iso)


class Manifest(BaseModel):
    # `schema` on disk, over HTTP and from model_dump() alike (a hook's plugin sees what the
    # file says); the attribute is `schema_version` because `schema` is a BaseModel method
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    schema_version: int = Field(default=1, alias="schema")
    job_id: str
    source: str
    kind: str
    trigger: Trigger
    status: Status = "queued"
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    counters: Counters = Field(default_factory=Counters)
    errors: list[JobError] = []
    errors_dropped: int = 0
    items_file: str
    # only while the job runs: a finished job's record reads as finished ones always have
    progress: LiveProgress | None = Field(default=None, exclude_if=lambda p: p is None)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = parse_iso(self.finished_at) if self.finished_at else datetime.now(timezone.utc)
        return round((end - parse_iso(self.started_at)).total_seconds(), 3)

    def add_error(self, error: JobError) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        else:
            self.errors_dropped += 1

    def to_json(self) -> dict[str, Any]:
        """The record as written to disk and served: never rewritten by masking."""
        return self.model_dump(mode="json", by_alias=True)
