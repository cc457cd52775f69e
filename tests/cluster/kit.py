"""What the cluster tests and `make cluster` share: one instance's ingestd.toml and the
credential registry the instances read (the database password, the S3 keys)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.plugins.s3.kit import ACCESS_KEY
from tests.support.helpers import write_config

BLOBS = "cluster"  # the blob store's bucket
DOCS = "docs"  # the demo/test source bucket


def write_registry(path: Path, pg_password: str) -> Path:
    path.write_text(json.dumps({
        "pg": {"type": "postgres", "password": pg_password},
        "minio": {"type": "aws", "access_key_id": ACCESS_KEY, "secret_access_key": "cluster-test-secret"},
    }))
    os.chmod(path, 0o600)
    return path


def s3_source(name: str, bucket: str, s3_url: str, every: float = 3600, **extra) -> dict:
    return {"name": name, "kind": "s3", "bucket": bucket, "endpoint_url": s3_url, "addressing_style": "path",
            "credentials": "minio", "every": every, **extra}


def instance_config(home: Path, name: str, *, database_url: str, s3_url: str, registry: Path, ttl: float,
                    every: float = 3600, log_level: str = "info", http: bool = False, cluster: bool = True,
                    sources: list[dict] | None = None, sinks: list[dict] | None = None,
                    daemon: dict | None = None, blob_url: str | None = None) -> Path:
    """One instance's ingestd.toml; `cluster=False` writes the same daemon embedded (no
    `[cluster]` table), for tests that hold both backends to one contract. `blob_url`: the
    blob store reached another way than the sources (a proxy to stop)."""
    home.mkdir(parents=True, exist_ok=True)
    tables = {"cluster": {"database_url": database_url, "database_credentials": "pg",
                          "blob_store": f"s3://{BLOBS}/store", "endpoint_url": blob_url or s3_url,
                          "addressing_style": "path",
                          "credentials": "minio", "instance_id": name, "lease_ttl": ttl}} if cluster else {}
    return write_config(
        home / "ingestd.toml",
        daemon={"state_dir": str(home / "state"), "log_format": "json", "log_level": log_level,
                "shutdown_timeout": 10, **(daemon or {})},
        http={"listen": "127.0.0.1:0"} if http else {"enabled": False},
        credentials={"registry": str(registry)},
        sources=sources if sources is not None else [s3_source("bucket", DOCS, s3_url, every)],
        **({"sinks": sinks} if sinks else {}),
        **tables,
    )
