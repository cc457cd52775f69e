"""The download path against the fake (issue 24 items 3-5): resumes held to the first
response's version (If-Range, and a 206 of another version refused); items edited,
renamed or deleted between the listing and the download; the download URL a listing
carries used while fresh, `/content` when it is not or the download host refuses it,
with the requests each way counted."""

import hashlib

import pytest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def etag(sp, item_id: str) -> str:
    node = sp.drive.nodes[item_id]
    return f'"{{{node.guid}}},{node.version}"'


def graph_calls(sp, since: int = 0) -> list[str]:
    return [r.path for r in sp.fake.records[since:] if r.kind == "graph"]


# -- item 5: the listed download URL ------------------------------------------------------


def test_a_first_sync_downloads_through_the_listed_urls_without_content_calls(sp):
    files = {f"d{i}/f{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(10)}
    ids = [sp.drive.add(path, data) for path, data in files.items()]

    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == 10, m.errors
    assert sp.content_calls() == []  # was one per file
    assert sorted(sp.downloads()) == sorted(ids)
    graph = graph_calls(sp)
    pages = [p for p in graph if p.endswith("/root/delta")]
    assert len(graph) == 2 + len(pages)  # site, libraries, the delta pages: nothing per file
    for item_id, data in zip(ids, files.values()):
        assert sp.doc(item_id).sha256 == sha(data)


def test_a_stale_listing_downloads_through_content(sp, monkeypatch):
    from ingestd_sharepoint import fetcher

    monkeypatch.setattr(fetcher, "LISTED_URL_TTL", 0.0)  # as if the listing were over 45 minutes old
    ids = [sp.drive.add(f"f{i}.txt", f"file {i}".encode()) for i in range(4)]
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 4
    assert sorted(sp.content_calls()) == sorted(ids) and sorted(sp.downloads()) == sorted(ids)
    assert not [r for r in sp.fake.of_kind("download") if r.status != 200]  # no URL was tried stale


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_listed_url_refused_by_the_download_host_falls_back_to_content(sp, status):
    ids = [sp.drive.add(f"f{i}.txt", f"file {i}".encode() * 50) for i in range(3)]
    expired = []

    def expire_before_the_first_download(record):  # the listing is done: its URLs expire now
        if record.kind == "download" and not expired:
            expired.append(True)
            sp.fake.expire_download_urls(status)
        return False

    sp.fake.fail(match=expire_before_the_first_download)
    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == 3, m.errors
    assert sorted(sp.content_calls()) == sorted(ids)  # one fresh URL each
    served = [r.status for r in sp.fake.of_kind("download")]
    assert sorted(served) == [200] * 3 + [status] * 3
    assert all(sp.doc(i).deleted_at is None for i in ids)


# -- item 3: resumes held to one version --------------------------------------------------


V1 = bytes(range(256)) * 4096  # 1 MiB
V2 = bytes(reversed(range(256))) * 4096  # same size, other bytes


@pytest.mark.parametrize("server", ["honours If-Range", "ignores If-Range"])
def test_an_edit_between_a_cut_and_its_resume_is_never_spliced_in(sp, server):
    item = sp.drive.add("big.bin", V1)
    listed = etag(sp, item)
    sp.fake.cuts[item] = 300_000
    sp.fake.ignore_if_range = server == "ignores If-Range"
    calls = []

    def edit_before_the_resume(item_id):
        calls.append(item_id)
        if len(calls) == 2:
            sp.drive.edit("big.bin", V2)

    sp.fake.before_download = edit_before_the_resume
    m = sp.run()

    assert m.status == "succeeded", m.errors
    doc = sp.doc(item)
    assert doc.sha256 == sha(V2) and doc.metadata["etag"] == etag(sp, item) != listed
    served = sp.fake.of_kind("download")
    resume = served[1]
    assert resume.headers["range"].startswith("bytes=") and resume.headers["if-range"] == listed
    if server == "honours If-Range":
        assert [r.status for r in served] == [200, 200]  # the whole new version, at once
    else:
        assert [r.status for r in served] == [200, 206, 200]  # its 206 refused, started over
        assert "range" not in served[2].headers


def test_a_resume_of_the_same_version_carries_on(sp):
    item = sp.drive.add("big.bin", V1)
    sp.fake.cuts[item] = 300_000
    m = sp.run()
    assert m.status == "succeeded" and sp.doc(item).sha256 == sha(V1)
    served = sp.fake.of_kind("download")
    assert [r.status for r in served] == [200, 206] and served[1].headers["if-range"] == etag(sp, item)


# -- item 4: edits and deletes between the listing and the download ----------------------


def test_edits_between_listing_and_download_take_the_newer_version(sp):
    ids = sorted(sp.drive.add(f"f{i:02}.txt", f"version one of {i}\n".encode() * 20) for i in range(12))
    edited = ids[1::4]
    paths = {i: sp.drive.path_of(i) for i in ids}

    def edit_as_it_downloads(item_id):
        if item_id in edited and sp.drive.nodes[item_id].content_version == 1:
            sp.drive.edit(paths[item_id], f"version two of {item_id}, longer\n".encode() * 20)

    sp.fake.before_download = edit_as_it_downloads
    m = sp.run()

    assert m.status == "succeeded" and m.counters.failed == 0, m.errors  # were `integrity` failures
    assert m.counters.ingested == 12
    for item_id in edited:
        doc = sp.doc(item_id)
        assert doc.sha256 == sha(sp.drive.nodes[item_id].content)
        assert doc.metadata["etag"] == etag(sp, item_id)  # its own eTag, not the listing's
        assert doc.metadata["quick_xor_hash"] == sp.drive.nodes[item_id].quick_xor()
    rereads = [p for p in graph_calls(sp) if p.rsplit("/", 1)[-1] in edited]
    assert sorted(p.rsplit("/", 1)[-1] for p in rereads) == sorted(edited)  # one item GET each
    assert sorted(sp.downloads()) == sorted(ids)  # and no second download

    before = len(sp.fake.records)
    m = sp.run()  # the next delta reports the edits the job has already stored
    assert m.status == "succeeded" and m.counters.ingested == 0 and sp.downloads(before) == []


def test_a_rename_between_listing_and_download_is_stored_then_repointed(sp):
    item = sp.drive.add("draft.txt", b"the text")
    sp.fake.before_download = lambda item_id: (sp.drive.nodes[item_id].name == "draft.txt"
                                               and sp.drive.rename("draft.txt", "final.txt"))
    m = sp.run()
    assert m.status == "succeeded" and sp.doc(item).metadata["etag"] == etag(sp, item)
    before = len(sp.fake.records)
    m = sp.run()
    assert m.status == "succeeded" and sp.downloads(before) == []
    assert sp.doc(item).metadata["path"] == "final.txt" and sp.doc(item).origin_uri.endswith("/final.txt")


def test_a_file_deleted_before_its_first_download_is_a_skip_not_a_failure(sp):
    keep = sp.drive.add("keep.txt", b"stays")
    doomed = sp.drive.add("doomed.txt", b"goes")
    sp.fake.before_download = lambda item_id: item_id == doomed and sp.drive.delete("doomed.txt")
    m = sp.run()
    assert m.status == "succeeded", m.errors  # was partial, `not_found`
    assert (m.counters.ingested, m.counters.skipped, m.counters.failed) == (1, 1, 0)
    assert m.errors[0].code == "not_found" and "deleted at the source before" in m.errors[0].message
    assert sp.doc(keep).sha256 == sha(b"stays")
    before = len(sp.fake.records)
    m = sp.run()  # not a retry (fetched by id): the next delta reports the deletion
    assert m.status == "succeeded" and m.counters.failed == 0
    assert not [p for p in graph_calls(sp, before) if "/items/" in p]


def test_a_document_whose_file_is_deleted_before_its_download_is_tombstoned(sp):
    item = sp.drive.add("report.txt", b"first")
    sp.drive.add("other.txt", b"other")
    sp.run()
    sp.drive.edit("report.txt", b"second")
    sp.fake.before_download = lambda item_id: item_id == item and sp.drive.delete("report.txt")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 1 and m.counters.failed == 0, m.errors
    assert sp.doc(item).deleted_at is not None and sp.doc(item).sha256 == sha(b"first")
