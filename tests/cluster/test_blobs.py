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


def test_a_blob_reader_serves_what_the_api_transport_asks(s3):
    """As `socket.sendfile` falls back on it: no descriptor, a seek to a Range's start, reads
    from there (one GET, from the position), and a missing blob known before any byte."""
    import io
    import socket

    b = store(s3)
    data = bytes(range(256)) * 40
    sha = b.put_bytes(data).key.rsplit("/", 1)[1]
    with b.reader(sha) as whole:
        with pytest.raises(io.UnsupportedOperation):
            whole.fileno()
        assert whole.read(100) + whole.read() == data
    s3.log.clear()
    left, right = socket.socketpair()
    with left, right, b.reader(sha) as part:
        assert left.sendfile(part, 1000, 5000) == 5000  # what the transport calls for `Range: bytes=1000-5999`
        got = b""
        while len(got) < 5000:
            got += right.recv(65536)
    assert got == data[1000:6000]
    assert [r.method for r in s3.log.requests if r.key.endswith(sha)] == ["HEAD", "GET"]
    empty = b.put_bytes(b"").key.rsplit("/", 1)[1]
    with b.reader(empty) as nothing:
        assert nothing.read(8192) == b""
    with pytest.raises(FileNotFoundError):
        b.reader("0" * 64)


def test_the_api_transport_streams_a_blob_in_large_blocks(s3):
    """A blob has no descriptor for `sendfile`; it goes S3 → socket in the transport's
    blocks (1 MiB), not `socket.sendfile`'s 8 KiB fallback, and a Range is honoured."""
    import socket
    import threading

    from ingestd.api.transport import files

    class Counting(blobs_mod.BlobReader):
        def readinto(self, buffer) -> int:
            reads.append(len(buffer))
            return super().readinto(buffer)

    b = store(s3)
    data = bytes(range(256)) * (12 << 10)  # 3 MiB
    sha = b.put_bytes(data).key.rsplit("/", 1)[1]
    reads: list[int] = []
    left, right = socket.socketpair()
    received = bytearray()
    reader = threading.Thread(target=lambda: _drain(right, received, len(data) - 10))
    reader.start()
    with left, right, Counting(b, sha) as blob:
        assert files.send(left, blob, 10, len(data) - 10) == len(data) - 10
        reader.join(60)
    assert bytes(received) == data[10:]
    assert max(reads) == files.BLOCK and len(reads) <= 4, reads[:5]


def _drain(sock, into: bytearray, count: int) -> None:
    while len(into) < count and (chunk := sock.recv(1 << 20)):
        into += chunk
