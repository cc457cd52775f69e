"""How the pipeline hands staged files to its enrich threads, and how bytes are read."""

import hashlib
import os
import threading

import pytest

from ingestd.config import Source
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Lifecycle
from ingestd.plugin.connector import Connector, Staged
from ingestd.store.hashing import CHUNK, HEAD, copy_hashing
from ingestd.jobs.pipeline import CHUNK as FILES_PER_CHUNK
from ingestd.jobs.pipeline import CHUNK_BYTES, Pipeline, _Chunker, _SizeGuess
from ingestd.store.blobs import Blobs
from ingestd.store.catalogue import Store


class Folder(Connector):
    """Stages every file of a folder without saying how big it is, as a drop folder does."""

    kind = "folder"

    def __init__(self, root, state):
        super().__init__(Source(name="f", kind="folder", enabled=True, options=None), None, state)
        self.root = root

    def stage(self, ctx):
        for name in sorted(os.listdir(self.root)):
            yield Staged(origin_uri=f"t://{name}", path=self.root / name, name=name)


class MeetingBlobs(Blobs):
    """A blob store whose writers wait for each other: it proves two files are copied at once."""

    def __init__(self, state, parties: int):
        super().__init__(state)
        self.barrier = threading.Barrier(parties, timeout=10)

    def put_file(self, *args, **kwargs):
        self.barrier.wait()
        return super().put_file(*args, **kwargs)


def test_big_files_are_copied_on_separate_threads(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"big{i}").write_bytes(os.urandom(CHUNK_BYTES + 1))
    state = tmp_path / "state"
    store, lifecycle = Store(state), Lifecycle(JobStore(state))
    store.blobs = MeetingBlobs(state, parties=2)
    pipeline = Pipeline(store, lifecycle, state)
    try:
        manifest = pipeline.run(lifecycle.create("f", "folder", "cli"), Folder(src, state), stop=threading.Event())
    finally:
        pipeline.close()
    assert not store.blobs.barrier.broken, "the two big files were copied one after the other"
    assert manifest.status == "succeeded" and manifest.counters.ingested == 2


def staged(size=None):
    return Staged(origin_uri="t://x", path="/nonexistent", name="x", size=size)


def test_chunks_hold_many_small_files_but_one_big_one():
    sizes = _SizeGuess()
    chunk = _Chunker(sizes)
    assert chunk.add(staged()), "with nothing learned yet, an unsized file is assumed big"
    assert len(chunk.take()) == 1
    for _ in range(10):
        sizes.learn(32 * 1024)
    adds = [chunk.add(staged()) for _ in range(FILES_PER_CHUNK)]
    assert adds == [False] * (FILES_PER_CHUNK - 1) + [True]
    assert len(chunk.take()) == FILES_PER_CHUNK and chunk.files == []
    assert chunk.add(staged(size=CHUNK_BYTES)), "a file the connector says is big goes alone"


def put(store, path, size_hint):
    fd = os.open(path, os.O_RDONLY)
    try:
        return store.blobs.put_file(fd, size_hint=size_hint)
    finally:
        os.close(fd)


@pytest.mark.parametrize("hint", [0, 50, 99, 100, 101, 4096])
def test_a_small_file_is_read_whole_whatever_size_was_expected(tmp_path, hint):
    """The size from fstat may be stale by the time of the read: all bytes are still read."""
    data = os.urandom(100)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    blob = put(Store(tmp_path / "state"), path, hint)
    assert blob.size == 100 and blob.sha256 == hashlib.sha256(data).hexdigest()


def test_copy_hashing_across_many_reads(tmp_path):
    data = os.urandom(2 * CHUNK + 12345)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    for _ in range(2):  # the second copy reuses the thread's buffer
        s, d = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            sha, size, head = copy_hashing(s, d)
        finally:
            os.close(s)
            os.close(d)
        assert (sha, size, head) == (hashlib.sha256(data).hexdigest(), len(data), data[:HEAD])
        assert dst.read_bytes() == data


def test_copy_hashing_stops_at_the_limit(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * (CHUNK + 1))
    s, d = os.open(src, os.O_RDONLY), os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(ValueError, match="limit"):
            copy_hashing(s, d, limit=CHUNK)
    finally:
        os.close(s)
        os.close(d)
