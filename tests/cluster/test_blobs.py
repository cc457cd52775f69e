"""The blob store on moto's S3 over HTTP: content-addressed keys, conditional writes
(a 412 is "already stored"), the HEAD-then-PUT fallback, multipart for large files,
ranged reads, immutable state snapshots."""

from __future__ import annotations

import hashlib

import pytest

from ingestd.cluster import blobs as blobs_mod
from ingestd.cluster.blobs import BlobStore

from .conftest import BUCKET


def store(moto, mode="auto") -> BlobStore:
    return BlobStore(moto.client(), BUCKET, "pre/fix", mode)


def puts(moto) -> list[str]:
    return [r.method for r in moto.log.requests if r.bucket == BUCKET and r.key.startswith("pre/fix/blobs/")]


def test_a_blob_is_written_once_under_its_hash(s3, tmp_path):
    b = store(s3)
    assert b.conditional  # moto honours If-None-Match: *
    data = b"hello cluster"
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "x"
    path.write_bytes(data)
    s3.log.clear()
    first, again = b.put_file(path, sha), b.put_file(path, sha)
    assert first.key == f"pre/fix/blobs/sha256/{sha[:2]}/{sha}" and first.written and not again.written
    assert puts(s3) == ["PUT", "PUT"]  # the second answered 412: no HEAD, no overwrite
    assert b.read(sha) == data and b.exists(sha)


def test_without_conditional_writes_a_head_comes_first(s3):
    b = store(s3, "off")
    s3.log.clear()
    assert b.put_bytes(b"abc").written and not b.put_bytes(b"abc").written
    assert puts(s3) == ["HEAD", "PUT", "HEAD"]


def test_a_store_that_ignores_the_condition_is_detected(s3):
    """A store that overwrites instead of answering 412 fails the probe: fallback mode."""

    class Ignoring:
        def __init__(self, client):
            self.client = client

        def put_object(self, **params):
            params.pop("IfNoneMatch", None)
            return self.client.put_object(**params)

        def __getattr__(self, name):
            return getattr(self.client, name)

    b = BlobStore(Ignoring(s3.client()), BUCKET, "pre/fix", "auto")
    assert b.conditional is False
    assert not [o for o in s3.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) if "probe" in o["Key"]]


def test_a_large_file_goes_up_in_parts_and_reads_back_in_ranges(s3, tmp_path, monkeypatch):
    monkeypatch.setattr(blobs_mod, "MULTIPART", 6 << 20)
    monkeypatch.setattr(blobs_mod, "PART", 5 << 20)
    data = bytes(range(256)) * (32 << 10)  # 8 MiB
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "big"
    path.write_bytes(data)
    b = store(s3)
    s3.log.clear()
    assert b.put_file(path, sha).written
    assert sum(1 for r in s3.log.requests if "partNumber" in r.query) == 2
    assert not b.put_file(path, sha).written  # a HEAD finds it: nothing uploaded again
    body, length = b.open(sha, 10, 19)
    with body:
        assert (body.read(), length) == (data[10:20], 10)
    assert b.read(sha) == data


def test_snapshots_are_immutable_and_named_by_content(s3):
    b = store(s3)
    key = b.put_snapshot("bucket", b'{"cursor": 1}')
    assert key.startswith("pre/fix/state/bucket/") and b.get_snapshot(key) == b'{"cursor": 1}'
    assert b.put_snapshot("bucket", b'{"cursor": 1}') == key


def test_a_hash_that_is_not_one_is_refused(s3):
    with pytest.raises(ValueError):
        store(s3).key("../../etc/passwd")
