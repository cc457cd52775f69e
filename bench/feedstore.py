"""A store with a long change feed, made in seconds: N documents of one version each and
the N `stored` changes that made them, written straight into a catalogue that a real
`ingestd ingest` created (so its tables, indexes and schema marker are ingestd's own, and a
change of format fails loudly here instead of being measured wrong). No blob bytes: the
feed and the listing never read them."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from . import ingest

SOURCE = "inbox"
BATCH = 50_000


@dataclass
class FeedStore:
    state: Path
    config: Path
    documents: int
    doc_ids: list[str]  # a sample, for listing pages from random places
    seconds: float


def make(root: Path, documents: int, seed: int = 17) -> FeedStore:
    """A state directory (and config, with HTTP) holding `documents` documents and changes."""
    started = time.monotonic()
    inbox, state = root / "inbox", root / "state"
    inbox.mkdir(parents=True)
    (inbox / "first.txt").write_text("the document the template run stores\n")
    config = ingest.write_config(root / "ingestd.toml", state, [{"name": SOURCE, "kind": "local", "path": inbox}],
                                 http=True)
    ingest.ingest(config, SOURCE)  # one real document, change and schema marker
    rng = random.Random(seed)
    db = sqlite3.connect(state / "documents.sqlite", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        job = db.execute("SELECT job_id FROM versions LIMIT 1").fetchone()[0]
        sample = _fill(db, inbox, job, documents - 1, rng)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return FeedStore(state, config, documents, sample, time.monotonic() - started)


def _fill(db: sqlite3.Connection, inbox: Path, job: str, count: int, rng: random.Random) -> list[str]:
    stamp = "2026-12-01T00:00:00.000Z"
    last = db.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0]
    sample: list[str] = []
    for start in range(0, count, BATCH):
        docs, versions, changes = [], [], []
        for k in range(start, min(count, start + BATCH)):
            doc_id = f"{rng.getrandbits(128):032x}"
            uri = f"file://{inbox}/g{k % 1000:03d}/doc-{k:07d}.txt"
            sha, size = f"{rng.getrandbits(256):064x}", 1024 + k % 31_744
            meta = json.dumps({"relpath": f"g{k % 1000:03d}/doc-{k:07d}.txt"})
            docs.append((doc_id, SOURCE, uri, 1))
            versions.append((doc_id, 1, sha, size, "text/plain", uri, stamp, stamp, job, meta))
            last += 1
            changes.append((last, "stored", doc_id, SOURCE, uri, 1, sha, size, "text/plain", job, stamp))
            if k % 97 == 0:
                sample.append(doc_id)
        db.execute("BEGIN")
        db.executemany("INSERT INTO documents (doc_id, source, origin_uri, current_seq) VALUES (?,?,?,?)", docs)
        db.executemany("INSERT INTO versions (doc_id, seq, sha256, size, mime, origin_uri, source_modified_at, "
                       "ingested_at, job_id, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)", versions)
        db.executemany("INSERT INTO changes (cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, "
                       "job_id, at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", changes)
        db.execute("UPDATE feed SET last = ? WHERE id = 1", (last,))
        db.execute("COMMIT")
    return sample
