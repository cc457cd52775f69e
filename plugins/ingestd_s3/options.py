"""The `kind = "s3"` option model. Pure pydantic: importing it never needs boto3, so
`check-config` can tell an operator what is wrong before the extra is installed."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ingestd.plugin import DeleteOptions, Duration, FilterOptions, ScheduleOptions

# Loose on purpose: S3-compatible stores (and legacy AWS buckets) accept names that the
# current AWS rules refuse, and the store itself gives the authoritative answer.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


class S3Options(ScheduleOptions, FilterOptions, DeleteOptions):
    """One bucket prefix polled on a schedule; docs/connectors/s3.md lists every key."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    credentials: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    min_age_seconds: Duration = 0.0
    max_object_size: int | None = Field(default=None, gt=0)
    concurrency: int = Field(default=8, ge=1, le=64)
    connect_timeout: Duration = Field(default=5.0, gt=0)
    read_timeout: Duration = Field(default=60.0, gt=0)

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if value.startswith("s3://") or "/" in value:
            raise ValueError("write the bucket name only (e.g. 'reports'); put the key path in 'prefix'")
        if not _BUCKET.match(value):
            raise ValueError(f"{value!r} is not a bucket name (letters, digits, '.', '-', '_'; 3 to 255 characters)")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL; write e.g. 'https://minio.example.com:9000'")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > 1024:
            raise ValueError("longer than the 1024-byte S3 key limit")
        return value
