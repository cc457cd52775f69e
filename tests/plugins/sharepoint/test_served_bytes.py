"""Office files SharePoint serves with other bytes than it lists (issue 19 item 1): under
`verify = "record"` stored as served, both sizes and hashes in the metadata, and not
downloaded again until the listing changes; under "strict" refused a bounded number of
runs, then left alone until the item changes; told apart from bytes damaged on the way,
which are still retried."""

import hashlib
import json

import pytest

from ingestd.errors import NotFoundError

STRICT_REFUSALS = 3  # ingestd_sharepoint.fetcher.STRICT_REFUSALS, stated here so a change is noticed
DOCX = b"PK\x03\x04 a word document's parts " * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def log_events(result) -> list[dict]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_record_stores_the_served_bytes_with_both_hashes_and_leaves_them_be(sp):
    item = sp.drive.add("Contract.docx", DOCX, rewrites=True)
    other = sp.drive.add("plain.txt", b"plain")
    node = sp.drive.nodes[item]
    served = node.served_bytes()
    assert served != DOCX

    result = sp.cli_plain()  # the default: verify = "record"
    assert result.returncode == 0, result.stderr[-2000:]
    doc = sp.doc(item)
    assert doc.sha256 == sha(served) and sp.blob(doc.sha256) == served
    listed = sp.drive.item_json(node)
    assert doc.metadata["listed_size"] == len(DOCX) == listed["size"]
    assert doc.metadata["listed_quick_xor_hash"] == listed["file"]["hashes"]["quickXorHash"]
    assert doc.metadata["quick_xor_hash"] == listed["file"]["hashes"]["quickXorHash"]
    assert doc.metadata["served_size"] == len(served) and doc.metadata["served_quick_xor_hash"] != \
        doc.metadata["listed_quick_xor_hash"]
    assert sp.downloads().count(item) == 2 and sp.downloads().count(other) == 1  # a second opinion, once
    events = log_events(result)
    warned = [e for e in events if e["event"] == "sharepoint served bytes differ from the listing"]
    assert len(warned) == 1 and warned[0]["item_id"] == item and warned[0]["office"] is True
    saved = next(e for e in events if e["event"] == "sharepoint state saved")
    assert saved["served_bytes_differ"] == 1

    for _ in range(2):  # no change: not downloaded again
        before = len(sp.fake.records)
        m = sp.run()
        assert m.status == "succeeded" and sp.downloads(before) == []

    before = len(sp.fake.records)
    sp.drive.rename("Contract.docx", "Contract-signed.docx")  # re-pointed: provenance kept
    m = sp.run()
    assert m.status == "succeeded" and sp.downloads(before) == []
    doc = sp.doc(item)
    assert doc.metadata["path"] == "Contract-signed.docx" and doc.metadata["served_size"] == len(served)

    sp.drive.edit("Contract-signed.docx", DOCX + b" amended")  # a changed listing: downloaded again
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.doc(item).sha256 == sha(sp.drive.nodes[item].served_bytes())


def test_strict_refuses_a_bounded_number_of_times_then_waits_for_a_change(sp):
    sp.write(verify="strict")
    item = sp.drive.add("Budget.xlsx", DOCX, rewrites=True)
    sp.drive.add("plain.txt", b"plain")

    outcomes = []
    for _ in range(STRICT_REFUSALS + 2):
        m = sp.run()
        outcomes.append((m.status, m.counters.failed, m.counters.skipped))
    failing = [("partial", 1, 0)] * (STRICT_REFUSALS - 1) + [("succeeded", 0, 1)]
    assert outcomes == failing + [("succeeded", 0, 0)] * 2
    assert sp.downloads().count(item) == 2 * STRICT_REFUSALS  # and never again
    with pytest.raises(NotFoundError):
        sp.doc(item)

    sp.drive.edit("Budget.xlsx", DOCX + b" v2")  # the item changed: asked for again
    before = len(sp.fake.records)
    m = sp.run()
    assert m.status == "partial" and m.errors[0].code == "integrity" and "strict" in m.errors[0].message
    assert sp.downloads(before).count(item) == 2


def test_a_damaged_download_is_fetched_again_not_recorded(sp):
    item = sp.drive.add("Memo.docx", DOCX)  # served as listed
    sp.fake.garble[item] = 1  # the first body damaged on the way
    m = sp.run()
    assert m.status == "succeeded" and sp.doc(item).sha256 == sha(DOCX), m.errors
    assert "served_size" not in sp.doc(item).metadata and sp.downloads().count(item) == 2


def test_bytes_damaged_twice_differently_fail_the_item_and_are_retried(sp):
    item = sp.drive.add("Memo.docx", DOCX, rewrites=True)
    sp.fake.garble[item] = 2  # both downloads damaged, each its own way: not the server's rewrite
    m = sp.run()
    assert m.status == "partial" and m.errors[0].code == "integrity" and "damaged" in m.errors[0].message
    m = sp.run()  # retried by id
    assert m.status == "succeeded" and sp.doc(item).sha256 == sha(sp.drive.nodes[item].served_bytes())


def test_other_files_served_wrong_the_same_way_are_refused_not_recorded_and_not_forever(sp):
    item = sp.drive.add("data.csv", b"a,b\n1,2\n" * 50)
    sp.drive.nodes[item].served = b"a,b\n1,3\n" * 50  # something on the way rewrites it, every time
    statuses = [sp.run().status for _ in range(STRICT_REFUSALS + 1)]
    assert statuses == ["partial"] * (STRICT_REFUSALS - 1) + ["succeeded"] * 2
    assert sp.downloads().count(item) == 2 * STRICT_REFUSALS
    with pytest.raises(NotFoundError):
        sp.doc(item)
