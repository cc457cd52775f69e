"""The change feed in the catalogue: what each commit appends, reading, waiting, retention."""

import os
import threading
import time

import pytest

from ingestd.errors import UsageError
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from ingestd.store.feed import FIRST, CursorExpired, format_cursor


def blob(store, data: bytes) -> Blob:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    try:
        stored = store.blobs.put_file(r, size_hint=len(data))
        return Blob(stored.sha256, stored.size, "text/plain")
    finally:
        os.close(r)


def change(b, origin="file:///a", job="job-00000001", source="s", metadata=None):
    return Change(doc_id=doc_id_for(source, origin), source=source, origin_uri=origin, blob=b, job_id=job,
                  metadata=metadata or {})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state")
    yield s
    s.close()


def everything(store, after=None, **kw):
    return store.feed.read(after, 10_000, **kw).changes


def test_each_kind_of_change_and_its_fields(store):
    v1, v2 = blob(store, b"one"), blob(store, b"two")
    doc = doc_id_for("s", "file:///a")
    first = store.commit([change(v1)])
    assert first.done == ["ingested"] and first.changed[0].type == "stored"
    assert store.commit([change(v1, job="job-00000002")]).changed == [None]  # nothing new: no change
    store.commit([change(v2, job="job-00000003")])
    store.commit([], [(doc, "job-00000004")])
    store.commit([], [(doc, "job-00000005")])  # already gone: no second `deleted`
    store.commit([change(v2, job="job-00000006")])
    got = everything(store)
    assert [(c.type, c.version, c.sha256, c.job_id) for c in got] == [
        ("stored", 1, v1.sha256, "job-00000001"),
        ("updated", 2, v2.sha256, "job-00000003"),
        ("deleted", 2, v2.sha256, "job-00000004"),
        ("restored", 3, v2.sha256, "job-00000006"),  # restored carries the version that brought it back
    ]
    assert [c.cursor for c in got] == [format_cursor(n) for n in (1, 2, 3, 4)]
    assert all(c.doc_id == doc and c.source == "s" and c.origin_uri == "file:///a" and c.size == 3
               and c.mime == "text/plain" and c.at for c in got)


def test_same_bytes_with_new_metadata_is_a_new_metadata_version_not_an_edit(store):
    b = blob(store, b"same bytes")
    store.commit([change(b, metadata={"version_id": "v1"})])
    committed = store.commit([change(b, job="job-00000002", metadata={"version_id": "v2"})])
    assert committed.done == ["unchanged"]  # the job counters still speak of content
    assert committed.changed[0].type == "updated" and committed.changed[0].sha256 == b.sha256
    doc = store.get(doc_id_for("s", "file:///a"))
    assert (doc.version, doc.kind, doc.metadata, doc.job_id) == (2, "metadata", {"version_id": "v2"}, "job-00000002")
    old = doc.versions[0]  # never rewritten
    assert (old.version, old.kind, old.metadata, old.job_id) == (1, "content", {"version_id": "v1"}, "job-00000001")
    # the same metadata once more is nothing new
    assert store.commit([change(b, job="job-00000003", metadata={"version_id": "v2"})]).changed == [None]


def test_new_permissions_alone_are_a_permissions_version_and_acl_changed(store):
    """Only `permissions` changed: `acl_changed`. Permissions and anything else (a rename,
    a column): `updated`, so a consumer that skips `acl_changed` misses nothing else."""
    b = blob(store, b"same bytes")
    acl = lambda who, **more: {"path": "a", "permissions": {"digest": who, "entries": [{"who": who}]}, **more}
    store.commit([change(b, metadata=acl("legal"))])
    committed = store.commit([change(b, job="job-00000002", metadata=acl("legal+adele"))])
    assert committed.done == ["unchanged"] and committed.changed[0].type == "acl_changed"
    assert (committed.changed[0].sha256, committed.changed[0].version) == (b.sha256, 2)
    store.commit([change(b, job="job-00000003", metadata=acl("legal+adele", columns={"Dept": "Audit"}))])
    store.commit([change(b, job="job-00000004", metadata=acl("legal", columns={"Dept": "Legal"}))])
    store.commit([Change(doc_id=doc_id_for("s", "file:///a"), source="s", origin_uri="file:///b", blob=b,
                         job_id="job-00000005", metadata=acl("everyone", columns={"Dept": "Legal"}))])
    store.commit([change(b, job="job-00000006", metadata=acl("everyone"))])  # back to /a, no columns
    store.commit([change(b, job="job-00000007", metadata={"path": "a"})])  # permissions gone: acl_changed
    doc = store.get(doc_id_for("s", "file:///a"))
    kinds = [v.kind for v in sorted(doc.versions, key=lambda v: v.version)] + [doc.kind]
    assert kinds == ["content", "permissions", "metadata", "metadata", "metadata", "metadata", "permissions"]
    assert [c.type for c in everything(store)] == [
        "stored", "acl_changed", "updated", "updated", "updated", "updated", "acl_changed"]
    assert doc.versions[-1].metadata["permissions"]["digest"] == "legal"  # history kept, never rewritten


def test_a_rename_of_the_same_document_is_a_metadata_version(store):
    b = blob(store, b"x")
    c = change(b, origin="sp://drive/old.txt")
    store.commit([c])
    moved = Change(doc_id=c.doc_id, source="s", origin_uri="sp://drive/new.txt", blob=b, job_id="job-00000002")
    store.commit([moved])
    doc = store.get(c.doc_id)
    assert doc.origin_uri == "sp://drive/new.txt" and doc.versions[0].origin_uri == "sp://drive/old.txt"
    assert everything(store)[-1].origin_uri == "sp://drive/new.txt"


def test_cursors_survive_a_reopen(tmp_path):
    store = Store(tmp_path / "state")
    store.commit([change(blob(store, b"a"))])
    store.close()
    again = Store(tmp_path / "state")
    try:
        committed = again.commit([change(blob(again, b"b"), origin="file:///b")])
        assert committed.changed[0].cursor == format_cursor(2)
        assert [c.cursor for c in everything(again)] == [format_cursor(1), format_cursor(2)]
    finally:
        again.close()


def test_pages_follow_on_and_cursors_order_as_strings(store):
    b = blob(store, b"x")
    store.commit([change(b, origin=f"file:///{i}") for i in range(25)])
    seen, after = [], None
    while True:
        page = store.feed.read(after, 10)
        seen += page.changes
        if not page.changes:
            break
        after = page.next_after
    assert len(seen) == 25 and [c.cursor for c in seen] == sorted(c.cursor for c in seen)
    assert after == format_cursor(25)
    assert store.feed.read(after, 10).next_after == after  # nothing new: stay put


def test_a_filtered_reader_moves_past_other_sources(store):
    b = blob(store, b"x")
    store.commit([change(b, origin=f"file:///{i}", source="other") for i in range(5)])
    store.commit([change(b, origin="file:///mine", source="mine")])
    store.commit([change(b, origin="file:///late", source="other")])
    page = store.feed.read(None, 100, sources=["mine"])
    assert [c.source for c in page.changes] == ["mine"]
    assert page.next_after == format_cursor(7)


def test_malformed_cursors_are_refused(store):
    for bad in ("12", "x" * 16, "-000000000000001", format_cursor(1) + "0"):
        with pytest.raises(UsageError):
            store.feed.read(bad, 10)


def test_a_cursor_ahead_of_the_store_must_resync(store):
    store.commit([change(blob(store, b"x"))])
    with pytest.raises(CursorExpired):
        store.feed.read(format_cursor(2), 10)


def test_retention_removes_old_changes_and_expires_their_cursors(store):
    b = blob(store, b"x")
    store.commit([change(b, origin=f"file:///{i}") for i in range(3)])
    cutoff = "9999-01-01T00:00:00.000Z"  # everything so far is older
    assert store.prune_changes(cutoff) == 3
    for after in (None, FIRST, format_cursor(2)):
        with pytest.raises(CursorExpired) as caught:
            store.feed.read(after, 10)
        assert caught.value.oldest == format_cursor(3)
    assert store.feed.read(format_cursor(3), 10).changes == []  # a follower that saw them all goes on
    store.commit([change(b, origin="file:///new")])
    assert [c.cursor for c in everything(store, format_cursor(3))] == [format_cursor(4)]


def test_retention_keeps_what_is_young(store):
    b = blob(store, b"x")
    store.commit([change(b, origin="file:///old")])
    assert store.prune_changes("2000-01-01T00:00:00.000Z") == 0
    assert len(everything(store)) == 1


def test_wait_wakes_on_commit_at_once(store, monkeypatch):
    monkeypatch.setattr("ingestd.store.feed.OTHERS_POLL", 3600.0)  # only the commit's notice can wake it
    b = blob(store, b"x")
    got = {}

    def waiter():
        started = time.monotonic()
        got["woke"] = store.feed.wait(FIRST, timeout=60)
        got["took"] = time.monotonic() - started

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 30
    while not store.feed.waiting and time.monotonic() < deadline:  # the waiter is waiting
        time.sleep(0.001)
    store.commit([change(b)])
    t.join(60)
    assert got["woke"] is True and got["took"] < 30


def test_wait_times_out_without_a_change(store):
    assert store.feed.wait(FIRST, timeout=0.05) is False


def test_wait_sees_another_process_commit(tmp_path, store):
    """A one-shot `ingestd ingest` commits through its own connection; the daemon's
    waiters see it within the cross-process poll."""
    other = Store(tmp_path / "state")
    try:
        other.commit([change(blob(other, b"y"))])
        assert store.feed.wait(FIRST, timeout=30) is True
    finally:
        other.close()


def test_listeners_hear_each_commit_after_it_is_visible(store):
    heard = []
    cancel = store.feed.on_commit(lambda last: heard.append((last, len(everything(store)))))
    store.commit([change(blob(store, b"x"))])
    store.commit([change(blob(store, b"y"), origin="file:///b")])
    cancel()
    store.commit([change(blob(store, b"z"), origin="file:///c")])
    assert heard == [(1, 1), (2, 2)]


def test_gapless_under_concurrent_commits(tmp_path):
    """Several writers commit at once (one store per writer, as separate processes
    would); a reader following the feed never finds a cursor at or below one it had
    already passed, and ends with every change exactly once."""
    root = tmp_path / "state"
    Store(root).close()
    writers, per_writer = 4, 60
    stop = threading.Event()
    seen: list[int] = []
    violations = []

    def write(n: int) -> None:
        s = Store(root)
        try:
            b = blob(s, f"w{n}".encode())
            for i in range(per_writer):
                s.commit([change(b, origin=f"file:///{n}/{i}/{k}", source=f"src{n}") for k in range(1 + i % 3)])
        finally:
            s.close()

    def follow() -> None:
        s = Store(root)
        after = None
        try:
            while True:
                done = stop.is_set()
                page = s.feed.read(after, 50)
                for c in page.changes:
                    n = int(c.cursor)
                    if seen and n <= seen[-1]:
                        violations.append((seen[-1], n))
                    seen.append(n)
                after = page.next_after
                if done and not page.changes:
                    return
        finally:
            s.close()

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    total = writers * sum(1 + i % 3 for i in range(per_writer))
    assert violations == []
    assert seen == list(range(1, total + 1))
