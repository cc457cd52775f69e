"""Delta and listing pages that arrive damaged (cut short, not JSON, a gateway's HTML, a
reset connection) are asked for again within the transient allowance, honouring
Retry-After; once it is spent the job fails `transient`, naming the fault without
quoting the body, and the saved delta link stays where it was."""

import pytest

from ingestd_sharepoint import http as sp_http

RETRY_AFTER = 1.0


def is_delta(rec) -> bool:
    return rec.kind == "graph" and rec.path.endswith("/root/delta")


def is_second_delta_page(rec) -> bool:
    return is_delta(rec) and "$skiptoken" in rec.query


def deltas(sp, since: int = 0) -> list:
    return [r for r in sp.fake.records[since:] if is_delta(r)]


@pytest.mark.parametrize("damage", ["short", "garbage", "truncate", "reset"])
def test_a_damaged_delta_page_is_fetched_again(sp, quick, damage):
    ids = [sp.drive.add(f"f{i}.txt", f"file {i}".encode()) for i in range(5)]  # with the root: two pages
    sp.fake.damage(damage, count=2, match=is_second_delta_page)

    m = sp.run()

    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == len(ids)
    assert [r.fault for r in deltas(sp)] == [None, damage, damage, None]
    assert sp.meta("delta_link")


def test_a_page_garbled_every_time_fails_the_job_transient_and_keeps_the_delta_link(sp, quick):
    sp.drive.add("a.txt", b"a")
    assert sp.run().status == "succeeded"
    link = sp.meta("delta_link")
    added = sp.drive.add("b.txt", b"b")
    sp.fake.damage("garbage", count=100, match=is_delta)
    before = len(sp.fake.records)

    m = sp.run()

    assert m.status == "failed"
    [error] = m.errors
    assert error.code == "transient"
    assert "not valid JSON" in error.message and f"gave up after {1 + sp_http.MAX_TRANSIENT} attempts" in error.message
    assert "html" not in error.message.lower() and "Bad Gateway" not in error.message  # never the body
    tried = deltas(sp, before)
    assert len(tried) == 1 + sp_http.MAX_TRANSIENT and all(r.fault == "garbage" for r in tried)
    assert error.request_id == tried[-1].request_id
    assert sp.meta("delta_link") == link and added not in sp.downloads()

    sp.fake.faults.clear()  # healed: the next run starts from the link the failed one left alone
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1 and sp.doc(added) is not None
    assert deltas(sp)[-1].query.get("token") == [link.split("token=")[1]]


@pytest.mark.parametrize("fault", ["500", "garbage"])
def test_a_transient_answer_with_retry_after_is_asked_again_after_exactly_that(sp, quick, fault):
    sp.drive.add("a.txt", b"a")
    if fault == "500":
        sp.fake.fail(500, retry_after="1", match=is_delta)
    else:
        sp.fake.damage("garbage", retry_after="1", match=is_delta)

    m = sp.run()

    assert m.status == "succeeded", m.errors
    bad, good = deltas(sp)
    assert bad.fault == fault and good.fault is None
    gap = good.started - bad.ended
    assert RETRY_AFTER - 0.001 <= gap < RETRY_AFTER + 0.9, gap  # the backoff alone is 20 ms here


def test_a_damaged_folder_listing_is_fetched_again(sp, quick):
    plan = sp.drive.add("Projects/Alpha/plan.txt", b"alpha plan")
    sp.run()
    sp.drive.rename("Projects/Alpha", "Omega")  # its files are re-read from the folder's listing
    sp.fake.damage("short", match=lambda r: r.path.endswith("/children"))

    m = sp.run()

    assert m.status == "succeeded", m.errors
    assert sp.doc(plan).origin_uri.endswith("/Projects/Omega/plan.txt")
    assert [r.fault for r in sp.fake.graph() if r.path.endswith("/children")] == ["short", None]
