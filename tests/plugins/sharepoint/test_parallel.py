"""Downloads `concurrency` at a time, as the fake sees them (it holds downloads open and
counts how many are in flight); outcomes in plan order whatever finishes first; a 429 on
one download holding back every request of the tenant; one failed item making the job
partial while the rest land; a job-fatal error or a stop calling off the rest at once."""

import os
import threading
import time

import pytest

from ingestd.plugin.kit import throttle
from ingestd_sharepoint import http as sp_http
from tests.support.helpers import run_cli, wait_for

RETRY_AFTER = 1.0


def add_files(sp, count: int, size: int = 2000) -> list[str]:
    """`count` files; returned in plan order (the run downloads in item-id order)."""
    return sorted(sp.drive.add(f"f{i:02}.bin", os.urandom(size)) for i in range(count))


def start_job(sp, stop: threading.Event | None = None):
    """Run a job on a thread; returns (thread, result dict that gets `m`)."""
    app, result = sp.app(), {}
    job = threading.Thread(target=lambda: result.update(m=app.run_job("docs", "cli", stop=stop)))
    job.start()
    return job, result


def origin(sp, item_id: str) -> str:
    return sp.drive.web_url(sp.drive.nodes[item_id])


@pytest.mark.parametrize("concurrency", [None, 2])
def test_downloads_run_concurrency_at_a_time(sp, concurrency):
    workers = concurrency or 4  # None: the default
    sp.write(concurrency=concurrency)
    ids = add_files(sp, 2 * workers)
    sp.fake.flight.hold(wave=workers)  # each download answers once `workers` of them are open

    m = sp.run()

    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == len(ids)
    assert sp.fake.flight.peak == workers


def test_concurrency_1_downloads_one_at_a_time(sp):
    sp.write(concurrency=1)
    add_files(sp, 3)
    sp.fake.flight.hold(wave=2, timeout=0.3)  # each download waits 0.3 s for a second one to show up

    m = sp.run()

    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == 3 and sp.fake.flight.peak == 1


def test_outcomes_keep_plan_order_when_downloads_finish_out_of_order(sp):
    ids = add_files(sp, 8)
    first = ids[0]

    def hold_the_first(item_id):  # the first in plan order finishes last
        if item_id == first:
            sp.fake.flight.wait_for(lambda f: f.finished >= len(ids) - 1, timeout=10)

    sp.fake.before_download = hold_the_first

    m = sp.run()

    assert m.status == "succeeded", m.errors
    served = sorted(sp.fake.of_kind("download"), key=lambda r: r.ended)
    assert served[-1].query["UniqueId"] == [sp.drive.nodes[first].guid]  # it really did finish last
    assert [i["origin_uri"] for i in sp.items(m)] == [origin(sp, i) for i in ids]


def test_failed_items_make_the_job_partial_while_the_rest_land_in_order(sp):
    ids = add_files(sp, 8)
    bad = [ids[1], ids[4], ids[6]]
    for item_id in bad:
        sp.fake.garble[item_id] = 2  # damaged on the way, the download and its second opinion alike
    sp.fake.flight.hold(wave=4)  # failures and successes side by side

    m = sp.run()

    assert m.status == "partial"
    assert (m.counters.ingested, m.counters.failed) == (5, 3)
    assert [(e.code, e.item) for e in m.errors] == [("integrity", origin(sp, i)) for i in bad]
    assert all(sp.doc(i) is not None for i in ids if i not in bad)
    assert not sp.workspace_files()  # the bad bytes are not left behind
    assert sp.meta("delta_link")  # a partial job advances; the failed items are fetched by id next run

    assert not any(sp.fake.garble.values())
    sp.fake.flight.release()
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 3


def test_a_429_on_one_download_holds_back_every_request_of_the_tenant(sp):
    ids = add_files(sp, 8)
    # the fourth download at once is told to wait, while the other three are open
    sp.fake.fail(429, retry_after="1", match=lambda r: r.kind == "download" and sp.fake.flight.now == 3)
    release = threading.Event()
    sp.fake.before_download = lambda item_id: release.wait(10)
    gate = throttle.gate(f"graph:{sp.fake.base_url}/{sp.fake.tenant}")

    job, result = start_job(sp)
    wait_for(lambda: gate.remaining() > 0, timeout=20, message="the 429 to shut the tenant's gate")
    wait_for(lambda: sp.fake.flight.now == 3, timeout=20, message="the three other downloads to be open")
    released = time.monotonic()  # now no thread is between the gate and the wire
    release.set()
    job.join(30)

    m = result["m"]
    assert m.status == "succeeded" and m.counters.ingested == len(ids), m.errors
    told = next(r for r in sp.fake.records if r.status == 429)
    later = [r for r in sp.fake.records if r.kind in ("graph", "download") and r.started >= released]
    assert len(later) >= 4  # the next files' downloads (and the told one's retry)
    assert min(r.started for r in later) - told.ended >= RETRY_AFTER - 0.001


def test_a_job_fatal_download_calls_off_the_others_without_waiting_for_them(sp):
    ids = add_files(sp, 8)
    victim = sp.drive.nodes[ids[1]].guid  # not first: the error must not wait for the first's turn
    sp.fake.fail(429, count=100, retry_after="0",
                 match=lambda r: r.kind == "download" and r.query.get("UniqueId") == [victim])
    release = threading.Event()
    sp.fake.before_download = lambda item_id: release.wait(20)  # the others stay open until released

    started = time.monotonic()
    m = sp.run()
    took = time.monotonic() - started

    assert m.status == "failed" and m.errors[0].code == "throttled"
    assert took < 10, took  # did not wait for the three downloads held open
    assert sp.meta("delta_link") is None
    release.set()
    wait_for(lambda: sp.fake.flight.now == 0 and not sp.workspace_files(), timeout=20,
             message="the called-off downloads to end and remove their files")
    assert len(set(sp.downloads())) == 4  # the queued ones were never started
    assert len([r for r in sp.fake.of_kind("download") if r.status == 429]) == 1 + sp_http.MAX_THROTTLED


def test_stopping_ends_the_job_without_waiting_for_open_downloads(sp):
    add_files(sp, 8)
    release = threading.Event()
    sp.fake.before_download = lambda item_id: release.wait(20)
    stop = threading.Event()

    job, result = start_job(sp, stop)
    wait_for(lambda: sp.fake.flight.now == 4, timeout=20, message="four downloads open")
    asked = time.monotonic()
    stop.set()
    job.join(20)

    assert not job.is_alive() and time.monotonic() - asked < 5
    assert result["m"].status == "failed" and result["m"].errors[0].code == "interrupted"
    assert sp.meta("delta_link") is None
    release.set()
    wait_for(lambda: sp.fake.flight.now == 0 and not sp.workspace_files(), timeout=20,
             message="the stopped downloads to end and remove their files")


def test_concurrency_out_of_range_is_a_config_error_naming_the_key(sp):
    for value, words in ((0, "greater than or equal to 1"), (33, "less than or equal to 32")):
        sp.write(concurrency=value)
        result = run_cli("check-config", "--config", sp.config)
        assert result.returncode == 78
        assert "concurrency" in result.stderr and words in result.stderr, result.stderr
