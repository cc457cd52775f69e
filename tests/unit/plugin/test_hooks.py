"""The hook dispatcher: a queue and threads per plugin, a time budget per call, counted
drops, failures logged with the job's context. Real pluggy, real threads; every wait is
on an event with a deadline."""

import threading

import pluggy
import pytest
import structlog
from structlog.testing import capture_logs

from ingestd.jobs.manifest import Manifest
from ingestd.plugin import spec
from ingestd.plugin.hooks import STRANDED_MAX, Hooks
from ingestd.plugin.spec import hookimpl
from ingestd.store.catalogue import Blob, Change
from tests.support.helpers import wait_for


def manifest(job_id="j1") -> Manifest:
    return Manifest(job_id=job_id, source="src", kind="k", trigger="cli", created_at="2026-01-01T00:00:00Z",
                    items_file="items.jsonl")


def change(doc_id="d1") -> Change:
    return Change(doc_id=doc_id, source="src", origin_uri=f"t://{doc_id}", blob=Blob("a" * 64, 3, "text/plain"),
                  job_id="j1", metadata={"tags": ["x"]})


class Recorder:
    """A plugin whose `document_stored` records each call, and waits while `gate` is clear
    for documents named in `held`."""

    def __init__(self, held=()):
        self.calls: list[tuple[str, str, str]] = []
        self.threads: set[str] = set()
        self.held = set(held)
        self.gate = threading.Event()
        self.entered = threading.Event()  # a held call has started
        self.done = threading.Event()

    @hookimpl
    def document_stored(self, document, job):
        self.threads.add(threading.current_thread().name)
        if document.doc_id in self.held:
            self.entered.set()
            assert self.gate.wait(30)
        self.calls.append(("document_stored", job.job_id, document.doc_id))

    @hookimpl
    def job_finished(self, manifest):
        self.calls.append(("job_finished", manifest.job_id, ""))
        self.done.set()


def hooks_for(*plugins, **limits) -> Hooks:
    pm = pluggy.PluginManager("ingestd")
    pm.add_hookspecs(spec)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"p{i}")
    return Hooks(pm, structlog.get_logger("test"), **limits)


def test_calls_run_in_order_off_the_callers_thread():
    rec = Recorder()
    hooks = hooks_for(rec)
    for i in range(3):
        hooks.document_stored(change(f"d{i}"), manifest())
    hooks.job_finished(manifest())
    assert rec.done.wait(10)
    assert rec.calls == [("document_stored", "j1", "d0"), ("document_stored", "j1", "d1"),
                         ("document_stored", "j1", "d2"), ("job_finished", "j1", "")]
    assert threading.current_thread().name not in rec.threads
    assert hooks.stats()["p0"].ok == 4
    hooks.close()


def test_a_slow_plugin_delays_only_itself():
    slow, quick = Recorder(held={"d0"}), Recorder()
    hooks = hooks_for(slow, quick)
    hooks.document_stored(change("d0"), manifest())
    hooks.job_finished(manifest())
    assert quick.done.wait(10) and slow.calls == []
    slow.gate.set()
    assert slow.done.wait(10)
    hooks.close()


def test_a_call_over_its_budget_is_given_up_and_the_next_runs():
    rec = Recorder(held={"stuck"})
    hooks = hooks_for(rec, budget=0.2)
    with capture_logs() as logs:
        hooks.document_stored(change("stuck"), manifest())
        hooks.document_stored(change("next"), manifest())
        wait_for(lambda: ("document_stored", "j1", "next") in rec.calls, timeout=10)
    over = [e for e in logs if e["event"] == "plugin hook over its time budget; given up"]
    assert len(over) == 1 and over[0]["doc_id"] == "stuck" and over[0]["job_id"] == "j1" and over[0]["source"] == "src"
    stats = hooks.stats()["p0"]
    assert stats.overran == 1 and stats.stranded == 1 and stats.ok == 1
    rec.gate.set()  # the given-up call ends by itself, later
    wait_for(lambda: hooks.stats()["p0"].stranded == 0, timeout=10)
    assert hooks.stats()["p0"].ok == 1  # a given-up call is not counted twice
    hooks.close()


def test_a_lane_stalled_by_stuck_calls_drops_instead_of_growing():
    rec = Recorder(held={f"stuck{i}" for i in range(STRANDED_MAX)})
    hooks = hooks_for(rec, budget=0.1)
    for i in range(STRANDED_MAX):
        hooks.document_stored(change(f"stuck{i}"), manifest())
    wait_for(lambda: hooks.stats()["p0"].stranded == STRANDED_MAX, timeout=10)
    with capture_logs() as logs:
        hooks.document_stored(change("late"), manifest())
    assert hooks.stats()["p0"].dropped == 1
    assert [e["reason"] for e in logs if e["event"] == "plugin hook call dropped"] == \
        ["stalled by calls over their budget"]
    rec.gate.set()
    wait_for(lambda: hooks.stats()["p0"].stranded == 0, timeout=10)
    hooks.document_stored(change("after"), manifest())  # takes calls again
    wait_for(lambda: ("document_stored", "j1", "after") in rec.calls, timeout=10)
    hooks.close()


def test_a_full_queue_drops_counts_and_shows_its_lag():
    rec = Recorder(held={"d0"})
    hooks = hooks_for(rec, limit=2)
    hooks.document_stored(change("d0"), manifest())
    assert rec.entered.wait(10)
    for i in range(1, 5):  # d0 runs (held), d1 and d2 wait, d3 and d4 find the queue full
        hooks.document_stored(change(f"d{i}"), manifest())
    stats = hooks.stats()["p0"]
    assert stats.dropped == 2
    assert stats.queued == 2 and stats.lag_s >= 0
    with capture_logs() as logs:
        rec.gate.set()
        wait_for(lambda: len(rec.calls) == 3, timeout=10)
        hooks.document_stored(change("d5"), manifest())
    assert [e["calls"] for e in logs if e["event"] == "plugin hook calls dropped"] == [2]
    wait_for(lambda: len(rec.calls) == 4, timeout=10)
    hooks.close()


def test_close_lets_queued_calls_run_then_drops_the_rest():
    rec = Recorder(held={"d0"})
    hooks = hooks_for(rec)
    for i in range(3):
        hooks.document_stored(change(f"d{i}"), manifest())
    assert rec.entered.wait(10)
    lane = hooks._lanes["p0"]
    hooks.close(timeout=0.2)  # d0 is held past the deadline: d1 and d2 never run
    assert rec.calls == [] and lane.stats().dropped == 2
    rec.gate.set()
    wait_for(lambda: rec.calls == [("document_stored", "j1", "d0")], timeout=10)


def test_failures_are_logged_with_the_jobs_context():
    class Failing:
        @hookimpl
        def document_stored(self, document, job):
            raise KeyError("boom")

        @hookimpl
        def job_finished(self, manifest):
            raise SystemExit(3)  # even this only ends the call

    hooks = hooks_for(Failing())
    with capture_logs() as logs:
        hooks.document_stored(change("d9"), manifest("j9"))
        hooks.job_finished(manifest("j9"))
        wait_for(lambda: hooks.stats()["p0"].failed == 2, timeout=10)
    failed = [e for e in logs if e["event"] == "plugin hook failed"]
    assert [(e["hook"], e["job_id"], e["source"], e.get("doc_id")) for e in failed] == [
        ("document_stored", "j9", "src", "d9"), ("job_finished", "j9", "src", None)]
    assert all(e["plugin"] == "p0" for e in failed)
    hooks.close()


def test_hooks_see_snapshots_not_the_live_objects():
    seen = {}
    done = threading.Event()

    class Meddler:
        @hookimpl
        def document_stored(self, document, job):
            for name, attempt in (("status", lambda: setattr(job, "status", "failed")),
                                  ("counters", lambda: setattr(job.counters, "ingested", 100)),
                                  ("metadata", lambda: document.metadata.__setitem__("evil", 1)),
                                  ("tags", lambda: document.metadata["tags"].append("evil")),
                                  ("blob", lambda: setattr(document.blob, "sha256", "0" * 64))):
                with pytest.raises(Exception) as refused:
                    attempt()
                seen[name] = type(refused.value).__name__
            seen["json"] = job.to_json()["job_id"]
            done.set()

    live_job, live_change = manifest(), change()
    hooks = hooks_for(Meddler())
    hooks.document_stored(live_change, live_job)
    live_job.status = "running"  # what core does next is not what the hook sees either
    assert done.wait(10)
    assert seen == {"status": "ValidationError", "counters": "ValidationError", "metadata": "AttributeError",
                    "tags": "AttributeError", "blob": "FrozenInstanceError", "json": "j1"}
    assert live_change.metadata == {"tags": ["x"]} and live_change.blob.sha256 == "a" * 64
    hooks.close()


def test_no_implementation_no_work():
    hooks = hooks_for()
    hooks.document_stored(change(), manifest())
    assert hooks.stats() == {}
