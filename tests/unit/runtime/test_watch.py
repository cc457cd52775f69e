"""The settle loop and watcher supervision, in-process with real folders."""

import errno
import logging
import os
from pathlib import Path

import pytest

from ingestd.runtime import watch as watch_mod
from ingestd.config import Source
from ingestd.runtime.queue import Busy
from ingestd_local.connector import LocalConnector
from ingestd_local.options import LocalOptions
from tests.support.helpers import wait_for


class Jobs:
    """Stands in for the worker pool: records submitted batches, then releases them."""

    def __init__(self):
        self.batches: list[tuple[str, str, list[Path]]] = []
        self.busy_source: str | None = None

    def submit(self, source, trigger, hint):
        if source == self.busy_source:
            raise Busy(type("M", (), {"source": source, "job_id": "x", "status": "running"})())
        self.batches.append((source, trigger, hint))

    def busy(self, source):
        return source == self.busy_source

    def files(self):
        return sorted(os.path.basename(p) for _, _, hint in self.batches for p in hint)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "drop"
    root.mkdir()
    return root


def connector(root: Path, tmp_path: Path, **options) -> LocalConnector:
    opts = LocalOptions(path=root, settle_seconds=0.1, rescan_seconds=3600, **options)
    return LocalConnector(Source(name="drop", kind="local", enabled=True, options=opts), None, tmp_path / "state")


@pytest.fixture
def watcher():
    jobs = Jobs()
    w = watch_mod.Watcher(jobs.submit, jobs.busy)
    w.jobs = jobs
    w.start()
    yield w
    w.stop()


def test_settled_files_become_one_batch_and_ignored_names_are_left(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path))
    for i in range(20):
        (folder / f"f{i}.txt").write_text("x")
    (folder / ".hidden").write_text("x")
    (folder / "part.tmp").write_text("x")
    wait_for(lambda: len(watcher.jobs.files()) == 20, timeout=10)
    assert ".hidden" not in watcher.jobs.files() and "part.tmp" not in watcher.jobs.files()
    assert len(watcher.jobs.batches) <= 3


def test_a_file_held_open_by_its_writer_is_not_taken(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path))
    with open(folder / "open.bin", "wb") as fh:
        fh.write(b"first half")
        fh.flush()
        (folder / "other.txt").write_text("x")
        wait_for(lambda: "other.txt" in watcher.jobs.files(), timeout=10)  # well past settle
        assert "open.bin" not in watcher.jobs.files()
        fh.write(b" second half")
    wait_for(lambda: "open.bin" in watcher.jobs.files(), timeout=10)


def test_busy_source_keeps_files_ready_until_the_job_is_done(watcher, folder, tmp_path):
    watcher.jobs.busy_source = "drop"
    watcher.add("drop", connector(folder, tmp_path))
    (folder / "a.txt").write_text("x")
    wait_for(lambda: watcher.health()["drop"]["ready"] == 1, timeout=10)
    assert watcher.jobs.batches == []
    watcher.jobs.busy_source = None
    watcher.job_done("drop", [])
    watcher.rescan()
    wait_for(lambda: watcher.jobs.files() == ["a.txt"], timeout=10)


def test_inotify_overflow_triggers_a_rescan(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path))
    wait_for(lambda: watcher._folders["drop"].next_rescan > 100, timeout=5)  # catch-up done
    watcher.remove("drop")  # no events: only a rescan can find the file
    c = connector(folder, tmp_path)
    (folder / "missed.txt").write_text("x")
    folder_state = watch_mod._Folder(name="drop", connector=c)
    folder_state.next_rescan = float("inf")
    folder_state.observer = None
    with watcher._cond:
        watcher._folders["drop"] = folder_state
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    wait_for(lambda: watcher.jobs.files() == ["missed.txt"], timeout=10)


def test_polling_mode_sees_files(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path, poll=True))
    assert watcher.health()["drop"]["mode"] == "polling"
    (folder / "polled.txt").write_text("x")
    wait_for(lambda: watcher.jobs.files() == ["polled.txt"], timeout=10)


def test_watch_limit_falls_back_to_polling_and_says_why(watcher, folder, tmp_path, monkeypatch):
    class Exhausted(watch_mod.Observer):
        def schedule(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watch_mod, "Observer", Exhausted)
    watcher.add("drop", connector(folder, tmp_path))
    health = watcher.health()["drop"]
    assert health["mode"] == "polling" and "max_user_watches" in health["degraded"]
    (folder / "still-seen.txt").write_text("x")
    wait_for(lambda: watcher.jobs.files() == ["still-seen.txt"], timeout=10)


def test_a_dead_observer_is_restarted(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path))
    state = watcher._folders["drop"]
    state.observer.stop()
    state.observer.join()
    assert not watcher.alive()
    watcher.rescan()
    wait_for(lambda: watcher.health()["drop"]["restarts"] == 1 and watcher.alive(), timeout=10)
    (folder / "after-restart.txt").write_text("x")
    wait_for(lambda: watcher.jobs.files() == ["after-restart.txt"], timeout=10)


def test_a_handler_exception_does_not_stop_delivery(watcher, folder, tmp_path, monkeypatch):
    watcher.add("drop", connector(folder, tmp_path))
    original = watcher._on_event
    calls = {"n": 0}

    def flaky(name, event):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        original(name, event)

    monkeypatch.setattr(watcher, "_on_event", flaky)
    (folder / "first.txt").write_text("x")
    (folder / "second.txt").write_text("y")
    wait_for(lambda: "second.txt" in watcher.jobs.files(), timeout=10)
    assert watcher.alive()
    assert os.path.exists(folder / "first.txt")


def test_kept_files_are_taken_once_and_forgotten_when_deleted(watcher, folder, tmp_path):
    watcher.add("drop", connector(folder, tmp_path, after="keep"))
    kept = folder / "kept.txt"
    kept.write_text("x")
    wait_for(lambda: watcher.jobs.files() == ["kept.txt"], timeout=10)
    watcher.job_done("drop", [str(kept)])
    seen = watcher._folders["drop"].seen
    wait_for(lambda: str(kept) in seen, timeout=5)
    watcher.rescan()
    (folder / "marker.txt").write_text("x")  # taken after the rescan has looked at kept.txt
    wait_for(lambda: "marker.txt" in watcher.jobs.files(), timeout=10)
    assert watcher.jobs.files().count("kept.txt") == 1, "a kept, unchanged file was taken again"
    kept.unlink()
    wait_for(lambda: str(kept) not in seen, timeout=10)
