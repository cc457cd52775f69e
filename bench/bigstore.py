"""A big state directory made in seconds, not by ingesting for hours: a million document
records (with the change feed that made them) and a hundred thousand finished jobs,
written straight in the formats ingestd itself writes.

Those formats are not copied here: a real `ingestd ingest` of one file makes a template
state dir, and the generator takes the tables' DDL from its SQLite catalogue and the shape
of a manifest, an items line and a record from what that run wrote. So a change of format
in ingestd is followed, or (a new required column) fails loudly here, never measured wrong.

The schema marker and any source state are copied from the template, so the daemon finds
the store at its own version and migrates nothing. Not generated: the blob bytes (the start-up and the API never read them; a million files
would only cost disk), and `processed/` originals.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import ingest

SOURCE = "inbox"
DOCS_PER_JOB = 10
PARTIAL_EVERY = 50  # every 50th job ended partial (one failed file), every 500th failed
FAILED_EVERY = 500
SAMPLE = 20_000  # ids kept for the pollers to pick from


@dataclass
class Template:
    """What one real ingest wrote: catalogue, one record of each table, manifest, items line."""

    ddl: list[tuple[str, str]]  # (type, sql) in creation order
    rows: dict[str, dict]  # table → one real row, by column (tables the run left empty: none)
    manifest: dict
    item: dict
    indent: int | None
    files: dict[str, bytes]  # the rest of what the state dir holds (schema marker, source state), by path


def make_template(root: Path) -> Template:
    """Run ingestd once on a one-file drop folder and read back what it wrote."""
    inbox, state = root / "inbox", root / "state"
    inbox.mkdir(parents=True)
    (inbox / "sample.txt").write_text("a sample document\n")
    config = ingest.write_config(root / "ingestd.toml", state, [{"name": SOURCE, "kind": "local", "path": inbox}])
    _, manifest = ingest.ingest(config, SOURCE)
    db = sqlite3.connect(f"file:{state / 'documents.sqlite'}?mode=ro", uri=True)
    try:
        ddl = db.execute("SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").fetchall()
        rows = {}
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            cur = db.execute(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 (names from the catalogue)
            row = cur.fetchone()  # none in the text tables: a one-shot ingest extracts nothing
            if row is not None:
                rows[table] = dict(zip([c[0] for c in cur.description], row))
    finally:
        db.close()
    text = (state / "jobs" / f"{manifest['job_id']}.json").read_text()
    item = ingest.items(state, manifest)[0]
    return Template(ddl, rows, manifest, item, 2 if "\n  " in text else None, _other_files(state))


def _other_files(state: Path) -> dict[str, bytes]:
    """Top-level files and source state, such as the schema marker: a generated store must
    be at the version this ingestd writes, or its first start would migrate it."""
    out = {}
    for entry in os.scandir(state):
        if entry.is_file() and not entry.name.startswith(("documents.sqlite", "daemon.json")) \
                and not entry.name.endswith(".lock"):
            out[entry.name] = Path(entry.path).read_bytes()
    sources = state / "sources"
    for folder, _, names in os.walk(sources):
        for name in names:
            path = Path(folder) / name
            if not name.endswith(".lock"):
                out[str(path.relative_to(state))] = path.read_bytes()
    return out


@dataclass
class BigStore:
    state: Path
    documents: int
    jobs: int
    job_ids: list[str]  # a random sample, for pollers
    doc_ids: list[str]
    newest_job: str
    middle_job: str
    seconds: float


def generate(template: Template, state: Path, inbox: Path, documents: int, jobs: int, seed: int = 20) -> BigStore:
    """Write `documents` records (every tenth with two versions) made by `jobs` finished jobs."""
    started = time.monotonic()
    rng = random.Random(seed)
    (state / "jobs").mkdir(parents=True)
    (state / "blobs" / "sha256").mkdir(parents=True)
    (state / "blobs" / "tmp").mkdir()
    for rel, data in template.files.items():
        (state / rel).parent.mkdir(parents=True, exist_ok=True)
        (state / rel).write_bytes(data)
    base = time.time() - jobs - 86_400  # one job a second, ending a day ago
    ids = [_job_id(base + j, rng) for j in range(jobs)]
    per_job = max(1, documents // jobs)
    doc_sample: list[str] = []
    db = _open(state / "documents.sqlite", template)
    try:
        docs = _write_jobs(template, state, inbox, ids, per_job, documents, rng, db, doc_sample)
        _finish(db, template)
    finally:
        db.close()
    pick = random.Random(seed + 1)
    return BigStore(state, docs, jobs, pick.sample(ids, min(SAMPLE, len(ids))), doc_sample,
                    ids[-1], ids[len(ids) // 2], time.monotonic() - started)


def _job_id(when: float, rng: random.Random) -> str:
    micro = int(when * 1_000_000)
    stamp = datetime.fromtimestamp(micro // 1_000_000, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}{micro % 1_000_000:06d}Z-{rng.getrandbits(32):08x}"


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _open(path: Path, template: Template) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # generation only; ingestd opens it in WAL
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    for kind, sql in template.ddl:
        if kind == "table":
            db.execute(sql)
    db.execute("BEGIN")
    return db


def _finish(db: sqlite3.Connection, template: Template) -> None:
    # the change feed's counter: the cursor of the last change written
    db.execute("INSERT INTO feed (id, last, expired) VALUES (1, (SELECT coalesce(max(cursor), 0) FROM changes), 0)")
    db.execute("COMMIT")
    for kind, sql in template.ddl:  # indexes after the rows: one sort instead of a million inserts
        if kind != "table":
            db.execute(sql)
    db.execute("PRAGMA journal_mode=WAL")


def _write_jobs(template: Template, state: Path, inbox: Path, ids: list[str], per_job: int, documents: int,
                rng: random.Random, db: sqlite3.Connection, doc_sample: list[str]) -> int:
    doc_cols, ver_cols = list(template.rows["documents"]), list(template.rows["versions"])
    insert_doc = f"INSERT INTO documents ({', '.join(doc_cols)}) VALUES ({', '.join('?' * len(doc_cols))})"
    insert_ver = f"INSERT INTO versions ({', '.join(ver_cols)}) VALUES ({', '.join('?' * len(ver_cols))})"
    insert_change = ("INSERT INTO changes (type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?)")  # the cursor is the next rowid: commit order
    keep = SAMPLE / max(1, documents)
    line_encoder = json.JSONEncoder(separators=(",", ":")).encode
    made = 0
    for j, job_id in enumerate(ids):
        created = _created(job_id)
        times = {"created": created, "modified": _iso(created - 60), "ingested": _iso(created + 0.5),
                 "older": _iso(created - 1), "older_job": ids[j - 1] if j else job_id}
        doc_rows, ver_rows, change_rows, lines = [], [], [], []
        for _ in range(per_job if j < len(ids) - 1 else max(per_job, documents - made)):
            doc, versions, line = _document(template, inbox, made, job_id, times, rng)
            doc_rows.append([doc[c] for c in doc_cols])
            ver_rows += [[v[c] for c in ver_cols] for v in versions]
            change_rows += [("stored" if v["seq"] == 1 else "updated", v["doc_id"], SOURCE, v["origin_uri"], v["seq"],
                             v["sha256"], v["size"], v["mime"], v["job_id"], v["ingested_at"])
                            for v in sorted(versions, key=lambda v: v["seq"])]
            lines.append(line)
            if rng.random() < keep:
                doc_sample.append(doc["doc_id"])
            made += 1
        db.executemany(insert_doc, doc_rows)
        db.executemany(insert_ver, ver_rows)
        db.executemany(insert_change, change_rows)
        _write_manifest(template, state, job_id, j, created, lines, line_encoder)
    return made


def _created(job_id: str) -> float:
    stamp = datetime.strptime(job_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc).timestamp()
    return stamp + int(job_id[15:21]) / 1_000_000


def _document(template: Template, inbox: Path, k: int, job_id: str, times: dict,
              rng: random.Random) -> tuple[dict, list[dict], dict]:
    doc_id = f"{rng.getrandbits(128):032x}"
    rel = f"g{k % 1000:03d}/doc-{k:07d}.txt"
    uri = f"file://{inbox}/{rel}"
    sha, size = f"{rng.getrandbits(256):064x}", 1024 + rng.randrange(31 * 1024)
    two = k % 10 == 0  # every tenth document was changed once
    doc = {**template.rows["documents"], "doc_id": doc_id, "source": SOURCE, "origin_uri": uri,
           "current_seq": 2 if two else 1, "deleted_at": None, "deleted_job": None}
    version = {**template.rows["versions"], "doc_id": doc_id, "seq": doc["current_seq"], "sha256": sha,
               "size": size, "mime": "text/plain", "origin_uri": uri, "source_modified_at": times["modified"],
               "ingested_at": times["ingested"], "job_id": job_id,
               "metadata": '{"relpath": "' + rel + '"}'}  # json.dumps of a plain name, as ingestd writes it
    versions = [version]
    if two:
        versions.append({**version, "seq": 1, "sha256": f"{rng.getrandbits(256):064x}", "job_id": times["older_job"],
                         "ingested_at": times["older"]})
    line = {**template.item, "origin_uri": uri, "doc_id": doc_id, "outcome": "ingested", "sha256": sha,
            "size": size, "mime": "text/plain"}
    return doc, versions, line


def _write_manifest(template: Template, state: Path, job_id: str, j: int, created: float, lines: list[dict],
                    encode) -> None:
    m = dict(template.manifest)
    status = "failed" if j % FAILED_EVERY == FAILED_EVERY - 1 else \
        "partial" if j % PARTIAL_EVERY == PARTIAL_EVERY - 1 else "succeeded"
    counters = {**m["counters"], "discovered": len(lines), "ingested": len(lines), "unchanged": 0, "skipped": 0,
                "failed": 0, "deleted": 0, "bytes": sum(line["size"] for line in lines)}
    errors = []
    if status != "succeeded":
        counters["failed"] = 1
        errors = [{"code": "io", "message": "Input/output error", "item": lines[0]["origin_uri"],
                   "at": _iso(created + 0.4), "request_id": None}]
    m.update(job_id=job_id, source=SOURCE, trigger="watch", status=status, created_at=_iso(created),
             started_at=_iso(created + 0.001), finished_at=_iso(created + 0.6), counters=counters, errors=errors,
             items_file=f"{job_id}.items.jsonl")
    jobs = state / "jobs"
    _write(jobs / f"{job_id}.json", (json.dumps(m, indent=template.indent) + "\n").encode())
    _write(jobs / m["items_file"], "".join(encode(line) + "\n" for line in lines).encode())


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def disk_bytes(state: Path) -> int:
    total = 0
    for folder, _, files in os.walk(state):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total
