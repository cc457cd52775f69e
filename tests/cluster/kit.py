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


def instance_config(home: Path, name: str, *, database_url: str, s3_url: str, registry: Path, ttl: float,
                    every: float = 3600, log_level: str = "info", http: bool = False) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    return write_config(
        home / "ingestd.toml",
        daemon={"state_dir": str(home / "state"), "log_format": "json", "log_level": log_level,
                "shutdown_timeout": 10},
        http={"listen": "127.0.0.1:0"} if http else {"enabled": False},
        credentials={"registry": str(registry)},
        cluster={"database_url": database_url, "database_credentials": "pg", "blob_store": f"s3://{BLOBS}/store",
                 "endpoint_url": s3_url, "addressing_style": "path", "credentials": "minio",
                 "instance_id": name, "lease_ttl": ttl},
        sources=[{"name": "bucket", "kind": "s3", "bucket": DOCS, "endpoint_url": s3_url,
                  "addressing_style": "path", "credentials": "minio", "every": every}],
    )
