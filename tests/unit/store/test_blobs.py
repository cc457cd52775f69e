"""The blob store trusts nothing it did not measure: a wrong-sized file at a blob's path is
replaced, a connector's claim about a file is checked against its bytes, and a file that
cannot fit is refused before anything is written."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from ingestd.errors import Code, StoreError
from ingestd.store.blobs import SMALL_FILE, Blobs, syncfs_reports_errors
from ingestd.store.space import NoRoom, Reserve, Space


def put(blobs: Blobs, tmp_path, data: bytes):
    src = tmp_path / f"src-{hashlib.md5(data).hexdigest()}"
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        return blobs.put_file(fd, size_hint=len(data))
    finally:
        os.close(fd)


def stored_files(blobs: Blobs) -> list:
    return [p for p in blobs.root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("size", [100, SMALL_FILE + 1], ids=["small", "large"])
@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named-temp"])
def test_a_planted_or_torn_blob_is_replaced_not_trusted(tmp_path, size, tmpfile):
    blobs = Blobs(tmp_path / "state")
    if not tmpfile:
        blobs._proc_fd = None  # as on a system without O_TMPFILE or /proc
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    path = blobs.path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # left by a power cut between link and flush, or planted
    stored = put(blobs, tmp_path, data)
    assert (stored.sha256, stored.size) == (sha, size)
    assert path.read_bytes() == data
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())
    assert not list(blobs.tmp_dir.iterdir())


def test_a_blob_of_the_right_size_is_shared(tmp_path):
    blobs = Blobs(tmp_path / "state")
    first = put(blobs, tmp_path, b"same bytes")
    inode = os.stat(blobs.path(first.sha256)).st_ino
    assert put(blobs, tmp_path, b"same bytes") == first
    assert os.stat(blobs.path(first.sha256)).st_ino == inode, "a whole blob is not rewritten"


def test_adopt_stores_what_the_bytes_are_and_refuses_a_false_claim(tmp_path):
    blobs = Blobs(tmp_path / "state")
    work = tmp_path / "workspace"
    work.mkdir()
    honest = work / "a.download"
    honest.write_bytes(b"alpha")
    stored = blobs.adopt(honest)  # no claim at all: measured
    assert (stored.sha256, stored.size) == (hashlib.sha256(b"alpha").hexdigest(), 5)
    assert blobs.path(stored.sha256).read_bytes() == b"alpha" and not honest.exists()
    liar = work / "b.download"
    liar.write_bytes(b"bravo")
    with pytest.raises(StoreError) as refused:
        blobs.adopt(liar, sha256="0" * 64, size=5)
    assert refused.value.code == Code.INTEGRITY
    with pytest.raises(StoreError):
        blobs.adopt(liar, sha256=hashlib.sha256(b"bravo").hexdigest(), size=4)
    assert not blobs.path("0" * 64).exists() and liar.exists()


def test_existing_requires_the_whole_blob(tmp_path):
    blobs = Blobs(tmp_path / "state")
    stored = put(blobs, tmp_path, b"kept bytes")
    assert blobs.existing(stored.sha256, 10).head == b"kept bytes"
    with pytest.raises(FileNotFoundError):
        blobs.existing(stored.sha256, 11)
    with pytest.raises(FileNotFoundError):
        blobs.existing(stored.sha256, None)  # content no record names
    with pytest.raises(FileNotFoundError):
        blobs.existing("../" + stored.sha256[3:], 10)


def test_a_file_that_cannot_fit_is_refused_before_writing(tmp_path):
    state = tmp_path / "state"
    # ~64 MiB of room and a 1 GiB (sparse) file: far enough on both sides that other work on
    # a shared disk, writing or freeing while this runs, cannot change the verdicts
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    blobs = Blobs(state, Space(tmp_path, Reserve(min_free_bytes=free - (64 << 20))))
    put(blobs, tmp_path, os.urandom(4096))  # fits
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    fd = os.open(big, os.O_RDONLY)
    try:
        with pytest.raises(NoRoom) as refused:
            blobs.put_file(fd, size_hint=1 << 30)
    finally:
        os.close(fd)
    assert refused.value.code == Code.DISK_FULL and "min_free_bytes" in str(refused.value)
    assert len(stored_files(blobs)) == 1 and not list(blobs.tmp_dir.iterdir())


def test_claims_in_flight_count_against_the_room(tmp_path):
    space = Space(tmp_path)
    room, _ = space.room()
    inside = threading.Event()
    with space.claim(room - 1000):
        inside.set()
        with pytest.raises(NoRoom):
            with space.claim(1 << 20):
                pass
    with space.claim(1 << 20):  # given back when the first copy ended
        pass


def test_the_reserve_is_the_larger_of_bytes_and_percent():
    assert Reserve(100, 0).of(10_000) == 100
    assert Reserve(100, 5).of(10_000) == 500


@pytest.mark.parametrize(("release", "reports"), [
    ("4.19.0-25-amd64", False), ("5.4.0", False), ("5.8.0", True), ("6.18.44-fc-v1272", True), ("junk", False),
])
def test_syncfs_errors_are_trusted_only_from_linux_5_8(release, reports):
    assert syncfs_reports_errors(release) is reports


def test_per_file_sync_flushes_every_new_blob(tmp_path):
    blobs = Blobs(tmp_path / "state", per_file_sync=True)
    put(blobs, tmp_path, b"one")
    put(blobs, tmp_path, os.urandom(SMALL_FILE + 1))
    assert len(blobs._unflushed) == 2
    blobs.flush()
    assert blobs._unflushed == []
