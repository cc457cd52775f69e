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


def test_folder_marker_keys_holding_bytes_are_ingested_once_under_their_exact_origin(s3env, moto):
    """Their content is real: a key ending in `/` or `_$folder$` that holds bytes is a
    document, named after its folder; empty markers stay silent (issue 24, item 6)."""
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
    moto.put("photos/", pdf)
    moto.put("logs_$folder$", b"hadoop wrote this")
    moto.put("empty/", b"")
    moto.put("old_$folder$", b"")
    moto.put("photos/a.jpg", b"\xff\xd8\xff\xe0jpeg")

    first = s3env.run()

    assert first["status"] == "succeeded" and first["errors"] == []
    assert (first["counters"]["ingested"], first["counters"]["skipped"]) == (3, 0)
    docs = s3env.documents()
    marker = docs["s3://docs/photos/"]
    assert key_of(marker.origin_uri) == (BUCKET, "photos/") and marker.metadata["folder_marker"] is True
    assert marker.sha256 == hashlib.sha256(pdf).hexdigest() and marker.mime == "application/pdf"
    assert docs[origin_uri(BUCKET, "logs_$folder$")].metadata["folder_marker"] is True
    assert "folder_marker" not in docs[origin_uri(BUCKET, "photos/a.jpg")].metadata

    s3env.moto.log.clear()
    again = s3env.run()
    assert again["status"] == "succeeded" and again["errors"] == [] and again["counters"]["ingested"] == 0
    assert moto.log.count("GET", per_object=True) == 0


def test_a_key_that_names_no_file_is_reported_once_until_it_changes(s3env, moto):
    for key in REFUSED:
        moto.put(key, body(key))
    first = s3env.run()
    assert first["counters"]["skipped"] == len(REFUSED)
    assert {e["code"] for e in first["errors"]} == {"invalid_name"}

    for _ in range(2):  # no-op runs say nothing more about it, and fetch nothing
        moto.log.clear()
        quiet = s3env.run()
        assert quiet["status"] == "succeeded" and quiet["errors"] == [] and quiet["counters"]["skipped"] == 0
        assert moto.log.count("GET", per_object=True) == 0

    moto.put("a/..", b"new content")  # a changed object is judged (and reported) afresh
    changed = s3env.run()
    assert [(e["code"], e["item"]) for e in changed["errors"]] == [("invalid_name", origin_uri(BUCKET, "a/.."))]
