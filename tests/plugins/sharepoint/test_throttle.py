"""Throttling: Retry-After honoured exactly (measured by the fake, from its side of the
wire), one gate per tenant shared by concurrent jobs, and a bounded number of waits."""

import threading
import time

import pytest

from ingestd.plugin.kit import throttle
from tests.support.helpers import wait_for

RETRY_AFTER = 1.0


def gaps_after(records, status):
    """For each response with `status`, seconds until the same request came again.
    (Not until the next request of any kind: with downloads running side by side,
    another one may have passed the gate just before the throttled answer arrived.)"""
    out = []
    for i, rec in enumerate(records):
        if rec.status == status:
            again = [r for r in records[i + 1:] if (r.method, r.path, r.query) == (rec.method, rec.path, rec.query)]
            out.append(again[0].started - rec.ended)
    return out


def test_retry_after_is_honoured_exactly_for_graph_and_download_host(sp):
    sp.drive.add("a.txt", b"a")
    sp.drive.add("b.txt", b"b")
    sp.fake.fail(429, count=2, retry_after="1", match=lambda r: r.path.endswith("/root/delta"))
    sp.fake.fail(503, count=1, retry_after="1", match=lambda r: r.kind == "download")
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == 2
    waits = gaps_after(sp.fake.records, 429) + gaps_after(sp.fake.records, 503)
    assert len(waits) == 3
    for gap in waits:
        assert RETRY_AFTER - 0.001 <= gap < RETRY_AFTER + 0.9, waits  # no extra backoff on top


def test_throttled_beyond_the_retry_budget_fails_the_job_with_the_request_id(sp):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(429, count=100, retry_after="0", match=lambda r: r.path.endswith("/root/delta"))
    m = sp.run()
    assert m.status == "failed"
    error = m.errors[0]
    assert error.code == "throttled" and "still throttled" in error.message
    last = [r for r in sp.fake.graph() if r.status == 429][-1]
    assert error.request_id == last.request_id
    assert len([r for r in sp.fake.graph() if r.status == 429]) == 7  # the first try and six waits


def test_one_gate_per_tenant_holds_back_every_job(sp):
    finance = sp.fake.add_site(path="/sites/finance", title="Finance")
    finance.add_drive().add("ledger.csv", b"a,b\n")
    sp.drive.add("a.txt", b"a")
    sp.write(extra_sources=[sp.source(name="finance", site_url=finance.web_url)])
    app = sp.app()
    sp.fake.fail(429, count=1, retry_after="1", match=lambda r: r.path.endswith("/root/delta"))

    results = {}
    first = threading.Thread(target=lambda: results.update(docs=app.run_job("docs", "cli")))
    first.start()
    key = f"graph:{sp.fake.base_url}/{sp.fake.tenant}"
    wait_for(lambda: throttle.gate(key).remaining() > 0, timeout=20, message="the tenant gate to close")
    told_to_wait = next(r for r in sp.fake.graph() if r.status == 429)
    results["finance"] = app.run_job("finance", "cli")
    first.join(30)

    assert results["docs"].status == "succeeded" and results["finance"].status == "succeeded"
    finance_calls = [r for r in sp.fake.graph() if finance.id in r.path or r.path.endswith(":/sites/finance")]
    assert finance_calls and finance_calls[0].started - told_to_wait.ended >= RETRY_AFTER - 0.001


def test_a_retry_after_longer_than_a_worker_should_wait_ends_the_job(sp):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(503, count=1, retry_after="3600", match=lambda r: r.path.endswith("/root/delta"))
    started = time.monotonic()
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "throttled" and "s more before calling" in m.errors[0].message
    assert time.monotonic() - started < 10
    assert sp.run().errors[0].code == "throttled"  # the next job in this process respects the same wait


def test_gate_only_moves_forward_and_stops_on_request():
    clock = [100.0]
    gate = throttle.Gate("t", clock=lambda: clock[0])
    assert gate.defer(5) == 105.0
    assert gate.defer(1) == 105.0  # a shorter wait never shortens a longer one
    assert gate.remaining() == 5.0
    stop = threading.Event()
    stop.set()
    with pytest.raises(throttle.Stopped):
        gate.wait(stop)
    clock[0] = 106.0
    assert gate.wait(stop) == 0.0


def test_retry_after_parsing():
    assert throttle.parse_retry_after("3") == 3.0
    assert throttle.parse_retry_after(" 0 ") == 0.0
    assert throttle.parse_retry_after(None) is None
    assert throttle.parse_retry_after("soon") is None
    now = time.time()
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= throttle.parse_retry_after(stamp, now=now) <= 30


def test_stopping_cuts_a_long_retry_after_short(sp):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(429, count=1, retry_after="120", match=lambda r: r.path.endswith("/root/delta"))
    app, stop, result = sp.app(), threading.Event(), {}
    job = threading.Thread(target=lambda: result.update(m=app.run_job("docs", "cli", stop=stop)))
    job.start()
    key = f"graph:{sp.fake.base_url}/{sp.fake.tenant}"
    wait_for(lambda: throttle.gate(key).remaining() > 100, timeout=20, message="the 120 s wait to begin")
    asked = time.monotonic()
    stop.set()
    job.join(20)
    assert not job.is_alive() and time.monotonic() - asked < 5
    assert result["m"].status == "failed" and result["m"].errors[0].code == "interrupted"
