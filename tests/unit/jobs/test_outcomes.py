"""A job's outcomes stream to disk for `finish`: a million-file job must not hold a
million outcomes (~1.4 KB each) in memory."""

from __future__ import annotations

import os
import threading

from ingestd.config import Source
from ingestd.errors import Code
from ingestd.jobs import outcomes as outcomes_mod
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Lifecycle
from ingestd.jobs.outcomes import OutcomeLog
from ingestd.jobs.pipeline import Pipeline
from ingestd.plugin.connector import Connector, Failed, Outcome, Staged
from ingestd.store.catalogue import Store


def outcome(i: int, token=None) -> Outcome:
    return Outcome(Staged(origin_uri=f"t://{i}", path=f"/x/{i}", name=str(i), token=token or ("rel", i)), "ingested")


def test_outcomes_spill_in_order_and_read_back_more_than_once(tmp_path):
    log = OutcomeLog(tmp_path, spill_at=10)
    for i in range(95):
        log.append(outcome(i))
        assert log.in_memory() <= 10
    assert len(log) == 95
    for _ in range(2):
        assert [o.event.token for o in log] == [("rel", i) for i in range(95)]
    assert os.listdir(tmp_path) == [], "the spool is an unnamed file: nothing to clean after a crash"
    log.close()


def test_outcomes_whose_tokens_cannot_be_pickled_stay_in_memory(tmp_path):
    log = OutcomeLog(tmp_path, spill_at=4)
    lock = threading.Lock()  # not picklable
    for i in range(10):
        log.append(outcome(i, token=(lock, i) if i == 5 else None))
    assert [o.event.name for o in log] == [str(i) for i in range(10)]
    assert list(log)[5].event.token[0] is lock


class Many(Connector):
    """Stages `count` files from a folder and checks, in finish, what it was given."""

    kind = "many"

    def __init__(self, root, state, count):
        super().__init__(Source(name="m", kind="many", enabled=True, options=None), None, state)
        self.root, self.count, self.seen = root, count, None

    def stage(self, ctx):
        for i in range(self.count):
            if i % 7 == 3:
                yield Failed(f"t://{i}", Code.PERMISSION, "refused at the source", token=i)
            else:
                yield Staged(origin_uri=f"t://{i}", path=self.root / f"f{i}", name=f"f{i}", token=i)

    def finish(self, ctx, outcomes, status):
        self.seen = (len(outcomes), outcomes.in_memory(), [o.event.token for o in outcomes],
                     [o.outcome for o in outcomes])


def test_finish_gets_every_outcome_without_holding_them(tmp_path, monkeypatch):
    monkeypatch.setattr(outcomes_mod, "SPILL_AT", 100)
    src, state = tmp_path / "src", tmp_path / "state"
    src.mkdir()
    count = 1000
    for i in range(count):
        (src / f"f{i}").write_bytes(b"%d" % i)
    store, lifecycle = Store(state), Lifecycle(JobStore(state))
    pipeline = Pipeline(store, lifecycle, state)
    connector = Many(src, state, count)
    try:
        m = pipeline.run(lifecycle.create("m", "many", "cli"), connector, stop=threading.Event())
    finally:
        pipeline.close()
        lifecycle.close()
    assert m.status == "partial"
    total, held, tokens, results = connector.seen
    assert total == count and held <= 100
    assert sorted(tokens) == list(range(count))  # each once (a commit records its failures after its changes)
    assert results.count("failed") == m.counters.failed == sum(1 for i in range(count) if i % 7 == 3)
