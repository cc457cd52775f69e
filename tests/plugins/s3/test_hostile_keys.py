"""Keys are untrusted: nothing they say may write outside the job workspace, every key
that names a file ingests under its exact origin URI, and the rest get a typed refusal."""

from __future__ import annotations

import hashlib

from ingestd_s3.keys import key_of, origin_uri

from .kit import BUCKET

LONG_ASCII = "k/" + "x" * 1018 + ".txt"  # 1,024 bytes, the S3 maximum
LONG_UTF8 = "\u00e9" * 510 + ".txt"  # 1,024 bytes in 514 characters
INGESTED = [
    "../../etc/passwd", "../outside.txt", "/abs/path.txt", "a//b.txt", "a/./b.txt", "a/../c.txt",
    "back\\slash\\..\\x.txt", LONG_ASCII, LONG_UTF8,
    "full.txt", "\uff46\uff55\uff4c\uff4c.txt",  # ASCII and its full-width look-alike
    "e\u0301.txt", "\u00e9.txt",  # NFD and NFC spellings of the same visible name
    "\u202eexe.txt", "ctl\x01\x1f.txt", "tab\there.txt", "sp ace+plus%25&q?#frag.txt",
]
REFUSED = [".", "..", "a/..", "x/."]  # no file name: invalid_name
MARKERS = ["folder/", "old_$folder$"]  # zero-byte folder markers: silently skipped
STATE_TOP = {"blobs", "jobs", "locks", "sources", "workspace", "documents.sqlite", "documents.sqlite-wal",
             "documents.sqlite-shm", "SCHEMA.json", "SCHEMA.lock"}


def body(key: str) -> bytes:
    return b"content of " + key.encode("utf-8")


def test_hostile_keys_stay_inside_and_keep_their_exact_identity(s3env, moto):
    for key in INGESTED + REFUSED:
        moto.put(key, body(key))
    for key in MARKERS:
        moto.put(key, b"")
    before = {p.name for p in s3env.root.iterdir()}

    code, manifest = s3env.ingest_cli()

    assert code == 0 and manifest["status"] == "succeeded", manifest
    c = manifest["counters"]
    assert (c["ingested"], c["skipped"], c["failed"]) == (len(INGESTED), len(REFUSED), 0)
    refused = {e["item"]: e["code"] for e in manifest["errors"]}
    assert refused == {origin_uri(BUCKET, k): "invalid_name" for k in REFUSED}
    assert origin_uri(BUCKET, "..") == "s3://docs/%2E%2E"  # no resolver can fold it away

    docs = s3env.documents()
    assert len(docs) == len(INGESTED)  # look-alikes and NFC/NFD twins stay distinct
    for key in INGESTED:
        doc = docs[origin_uri(BUCKET, key)]
        assert key_of(doc.origin_uri) == (BUCKET, key)
        assert doc.metadata["key"] == key
        assert doc.sha256 == hashlib.sha256(body(key)).hexdigest()

    # nothing was written anywhere a key could point: not beside the state dir, not in it
    assert {p.name for p in s3env.root.iterdir()} == before | {"state"}
    assert {p.name for p in s3env.state.iterdir()} <= STATE_TOP
    names = {p.name for p in s3env.root.rglob("*")}
    assert not names & {"passwd", "etc", "outside.txt", "abs", "c.txt"}
    assert not any(p.is_symlink() for p in s3env.root.rglob("*"))


def test_a_folder_marker_with_content_is_reported_not_dropped(s3env, moto):
    moto.put("photos/", b"bytes where a folder marker should be empty")
    moto.put("photos/a.jpg", b"\xff\xd8\xff\xe0jpeg")
    result = s3env.run()
    assert result["status"] == "succeeded" and result["counters"]["ingested"] == 1
    assert [(e["code"], e["item"]) for e in result["errors"]] == [("invalid_name", "s3://docs/photos/")]
