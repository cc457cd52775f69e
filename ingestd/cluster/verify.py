"""`ingestd cluster verify`: the embedded `ingestd verify` checks, on PostgreSQL and S3.

The checks themselves are `ingestd.store.verify`'s, which merges two streams sorted by
content hash; this module answers its two sides: the blob store's listing (sorted by key,
and a key ends in its hash under a folder of its first two hex digits, so key order is
hash order) and the database's versions (`ORDER BY sha256 COLLATE "C"`: byte order, as
S3 lists). Plain, it trusts each object's name and compares sizes from the listing (one
LIST per 1,000 blobs, no reads); `deep` reads every blob and hashes it.

Each source's sync-state pointer is checked too (one GET per source, plain or deep): the
snapshot it names is on S3, under that source's folder, its bytes hash to its name, and it
is a tar a restore would extract. A bad one fails the restore of the source's next job on
an instance whose own copy is not that snapshot.

It also checks what only the database can get wrong: a document whose current version
row is missing, and a feed whose counter is behind a cursor it has handed out. Repair is
not offered here: a cluster's blob is missing or damaged on S3, where the remedy is the
bucket's versioning or a re-sync, not a quarantine folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import PurePosixPath

from ingestd.cluster import sync_state
from ingestd.cluster.blobs import BlobStore
from ingestd.store.verify import Finding, Report, verify


class S3Blobs:
    """`BlobSide` for the cluster's blob store."""

    def __init__(self, blobs: BlobStore, deep: bool):
        self.blobs = blobs
        self.deep = deep
        self._sizes: dict[str, int] = {}

    def files(self) -> Iterator[tuple[str, PurePosixPath]]:
        pages = self.blobs.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.blobs.bucket, Prefix=self.blobs._path("blobs", "sha256") + "/")
        for page in pages:
            for obj in page.get("Contents", []):
                key = PurePosixPath(obj["Key"])
                self._sizes = {obj["Key"]: obj["Size"]}  # measured right after it is yielded
                yield key.name, key

    def measure(self, location: PurePosixPath) -> tuple[str, int]:
        size = self._sizes.get(str(location), -1)
        if not self.deep:
            return location.name, size
        body, length = self.blobs.open(location.name)
        digest = hashlib.sha256()
        with body:
            for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
        return digest.hexdigest(), length

    def quarantine(self, name: str, location) -> str:
        raise NotImplementedError("cluster verify does not repair")


class Records:
    """`RecordSide` for the cluster database."""

    def __init__(self, conn):
        self.conn = conn

    def check_database(self) -> list[str]:
        q = self.conn.execute
        out = []
        headless = q("SELECT count(*) FROM documents d LEFT JOIN versions v ON v.doc_id = d.doc_id "
                     "AND v.seq = d.current_seq WHERE v.doc_id IS NULL").fetchone()[0]
        if headless:
            out.append(f"{headless} document(s) name a current version the database does not hold")
        last, newest = q("SELECT (SELECT last FROM feed WHERE id = 1), (SELECT max(cursor) FROM changes)").fetchone()
        if newest is not None and newest > last:
            out.append(f"the feed's counter ({last}) is behind its newest change ({newest})")
        return out

    def versions(self) -> Iterator[tuple[str, int, str, int, bool]]:
        with self.conn.transaction(), self.conn.cursor(name="verify_versions") as cur:
            cur.itersize = 5000
            cur.execute('SELECT v.sha256, v.size, v.doc_id, v.seq, v.seq = d.current_seq FROM versions v '
                        'JOIN documents d ON d.doc_id = v.doc_id ORDER BY v.sha256 COLLATE "C", v.doc_id, v.seq')
            yield from cur

    def mark_damaged(self, sha256: str, reason: str) -> None:
        raise NotImplementedError("cluster verify does not repair")


class ClusterReport(Report):
    states: int = 0  # source state snapshots checked


def run(conn, blobs: BlobStore, *, deep: bool) -> ClusterReport:
    report = ClusterReport(**verify(S3Blobs(blobs, deep), Records(conn)).model_dump())
    for source, key in conn.execute("SELECT name, state_key FROM sources WHERE state_key IS NOT NULL ORDER BY name"):
        report.states += 1
        wrong = state_problem(blobs, source, key)
        if wrong is not None:
            report.findings.append(Finding(problem="source_state", detail=f"source {source!r}: {key}: {wrong}"))
    return report


def state_problem(blobs: BlobStore, source: str, key: str) -> str | None:
    """What is wrong with the snapshot `source`'s pointer names, or None."""
    from botocore.exceptions import ClientError

    if not key.startswith(blobs._path("state", source) + "/"):
        return "the pointer names an object outside the source's state folder"
    try:
        data = blobs.s3.get_object(Bucket=blobs.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return "missing from the blob store (the source's next job cannot restore its cursor)"
        raise
    return sync_state.problem(key, data)


def describe(report: ClusterReport) -> list[str]:
    lines = [f"{report.blobs} blobs, {report.versions} versions, {report.unreferenced} blobs no version names, "
             f"{report.states} source states"]
    for f in report.findings:
        docs = f" (documents {', '.join(f.documents[:5])}{' …' if len(f.documents) > 5 else ''})" if f.documents else ""
        lines.append(f"{f.problem}: {f.sha256 + ': ' if f.sha256 else ''}{f.detail}{docs}")
    lines.append("ok" if report.ok else f"{len(report.findings)} problem(s)")
    return lines


def command(cfg, *, deep: bool, as_json: bool) -> tuple[list[str], int]:
    """`ingestd cluster verify`: lines to print and the exit status."""
    import json

    from ingestd.cluster import schema
    from ingestd.cluster.commands import connected
    from ingestd.credentials import Registry

    with connected(cfg, "verify") as (_db, conn):
        schema.check(conn)
        report = run(conn, BlobStore.from_config(cfg.cluster, Registry(cfg.credentials.registry)), deep=deep)
    lines = [json.dumps(report.model_dump(), indent=2)] if as_json else describe(report)
    return lines, 0 if report.ok else 1
