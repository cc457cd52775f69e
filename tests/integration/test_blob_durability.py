"""Blob bytes reach the disk before a record names them, also when `blobs/` is another
filesystem than the state dir (the suspected syncfs gap of issue 14: confirmed, fixed).

The blobs live on an ext4 loop device mounted at `state/blobs`; the kernel's own count of
sectors written to that device must cover a new blob by the time its job has committed
(the kernel's flusher would write it back only after ~30 s on its own)."""

import os
import subprocess
import threading
from pathlib import Path

import pytest

from ingestd.config import Source
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Lifecycle
from ingestd.jobs.pipeline import Pipeline
from ingestd.plugin.connector import Connector, Staged
from ingestd.store.catalogue import Store

SIZE = 8 << 20


class OneFile(Connector):
    kind = "one"

    def __init__(self, path: Path, state: Path):
        super().__init__(Source(name="one", kind="one", enabled=True, options=None), None, state)
        self.path = path

    def stage(self, ctx):
        yield Staged(origin_uri=self.path.as_uri(), path=self.path, name=self.path.name)


@pytest.fixture
def blobs_on_their_own_disk(tmp_path):
    image, state = tmp_path / "blobs.img", tmp_path / "state"
    with open(image, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attached.returncode != 0:
        pytest.skip(f"no loop device here: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    (state / "blobs").mkdir(parents=True)
    try:
        # commit=60: the journal does not push the data out on its own within the test
        mounted = subprocess.run(["mount", "-o", "commit=60", device, str(state / "blobs")], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a loop device here: {mounted.stderr.decode().strip()}")
        yield state, Path("/sys/block") / Path(device).name / "stat"
    finally:
        subprocess.run(["umount", str(state / "blobs")], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)


def sectors_written(stat: Path) -> int:
    return int(stat.read_text().split()[6])


@pytest.mark.parametrize("per_file", [False, True], ids=["syncfs", "fsync-per-blob"])
def test_blobs_on_another_filesystem_are_durable_before_their_record(tmp_path, blobs_on_their_own_disk, per_file):
    state, stat = blobs_on_their_own_disk
    source = tmp_path / "report.bin"
    source.write_bytes(os.urandom(SIZE))
    store = Store(state)
    store.blobs._per_file = per_file  # as on a kernel older than 5.8
    lifecycle = Lifecycle(JobStore(state))
    pipeline = Pipeline(store, lifecycle, state)
    before = sectors_written(stat)
    try:
        manifest = pipeline.run(lifecycle.create("one", "one", "cli"), OneFile(source, state), stop=threading.Event())
    finally:
        pipeline.close()
        lifecycle.close()
        store.close()
    assert manifest.status == "succeeded"
    assert sectors_written(stat) - before >= SIZE // 512, "the blob's bytes were still only in the page cache"
