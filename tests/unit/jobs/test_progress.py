"""A running job shows progress: live in memory (what the API serves), in its manifest file
about once a second (what another process reads), during one huge file too; and its
counters move as work commits, even while the connector is busy elsewhere."""

from __future__ import annotations

import json
import os
import threading

import pytest

from ingestd.config import Source
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Lifecycle
from ingestd.jobs.pipeline import Pipeline
from ingestd.plugin.connector import Connector, Staged
from ingestd.store.blobs import Blobs
from ingestd.store.catalogue import Store
from tests.support.helpers import wait_for


class Files(Connector):
    """Stages the given files; after `pause_after` of them, waits until `resume` is set."""

    kind = "files"

    def __init__(self, paths, state, *, pause_after=None, listing=False):
        super().__init__(Source(name="f", kind="files", enabled=True, options=None), None, state)
        self.paths, self.pause_after, self.listing = paths, pause_after, listing
        self.paused, self.resume = threading.Event(), threading.Event()

    def stage(self, ctx):
        if self.listing:
            ctx.progress.phase("listing")
            ctx.progress.expect(items=len(self.paths), bytes=sum(p.stat().st_size for p in self.paths))
        for i, path in enumerate(self.paths):
            if i == self.pause_after:
                self.paused.set()
                assert self.resume.wait(30)
            yield Staged(origin_uri=path.as_uri(), path=path, name=path.name)


class GatedBlobs(Blobs):
    """Stops a big copy after its first chunk until the test lets it go on."""

    def __init__(self, state):
        super().__init__(state)
        self.halfway, self.resume = threading.Event(), threading.Event()

    def put_file(self, fd, *, progress=None, **kwargs):
        def gated(n):
            progress(n)
            if not self.halfway.is_set():
                self.halfway.set()
                assert self.resume.wait(30)
        return super().put_file(fd, progress=gated, **kwargs)


@pytest.fixture
def world(tmp_path):
    state = tmp_path / "state"
    store, lifecycle = Store(state), Lifecycle(JobStore(state))
    pipeline = Pipeline(store, lifecycle, state)
    yield store, lifecycle, pipeline
    pipeline.close()
    lifecycle.close()
    store.close()


def in_background(pipeline, lifecycle, connector):
    manifest = lifecycle.create("f", connector.kind, "api")
    result = {}
    thread = threading.Thread(target=lambda: result.update(m=pipeline.run(manifest, connector)))
    thread.start()
    return manifest.job_id, thread, result


def on_disk(lifecycle, job_id) -> dict:
    return json.loads((lifecycle.jobs.dir / f"{job_id}.json").read_text())


def test_one_huge_file_shows_its_bytes_while_it_is_copied(tmp_path, world):
    store, lifecycle, pipeline = world
    store.blobs = GatedBlobs(tmp_path / "state")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 << 20))
    job_id, thread, result = in_background(pipeline, lifecycle, Files([big], tmp_path / "state"))
    try:
        assert store.blobs.halfway.wait(30)
        live = lifecycle.jobs.get(job_id)
        assert live.status == "running" and live.counters.ingested == 0
        assert live.progress.phase == "storing" and 0 < live.progress.bytes_done < 8 << 20
        wait_for(lambda: (on_disk(lifecycle, job_id).get("progress") or {}).get("bytes_done", 0) > 0,
                 timeout=10, message="the manifest file to show the copy's progress")
    finally:
        store.blobs.resume.set()
        thread.join(60)
    final = result["m"]
    assert final.status == "succeeded" and final.counters.ingested == 1 and final.progress is None
    assert "progress" not in on_disk(lifecycle, job_id)


def test_counters_move_while_the_connector_is_busy(tmp_path, world):
    _, lifecycle, pipeline = world
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"f{i}.txt")
        paths[-1].write_bytes(b"file %d\n" % i)
    connector = Files(paths, tmp_path / "state", pause_after=5, listing=True)
    job_id, thread, result = in_background(pipeline, lifecycle, connector)
    try:
        assert connector.paused.wait(30)
        live = wait_for(lambda: (m := lifecycle.jobs.get(job_id)).counters.ingested == 5 and m, timeout=15,
                        message="the first five files to be committed while the connector waits")
        assert live.status == "running"
        assert (live.progress.phase, live.progress.items_done, live.progress.items_total) == ("listing", 5, 8)
        # the seam a progress display polls in-process: the job holding the source, live
        watched = lifecycle.live("f")
        assert watched.job_id == job_id and watched.counters.ingested == 5 and watched.progress.items_done == 5
        wait_for(lambda: on_disk(lifecycle, job_id)["counters"]["ingested"] == 5, timeout=10,
                 message="the manifest file to have the committed counters")
    finally:
        connector.resume.set()
        thread.join(60)
    assert result["m"].counters.ingested == 8 and result["m"].status == "succeeded"
    assert lifecycle.live("f") is None  # done: the source is free, nothing to watch


def test_finishing_shows_while_the_connector_moves_originals(tmp_path, world):
    _, lifecycle, pipeline = world
    path = tmp_path / "one.txt"
    path.write_bytes(b"one")
    seen = {}

    class Mover(Files):
        def finish(self, ctx, outcomes, status):
            seen["during"] = lifecycle.jobs.get(ctx.job_id)

    final = pipeline.run(lifecycle.create("f", "files", "cli"), Mover([path], tmp_path / "state"))
    during = seen["during"]
    assert during.status == "succeeded" and during.progress.phase == "finishing"
    assert final.progress is None and lifecycle.jobs.get(final.job_id).progress is None
