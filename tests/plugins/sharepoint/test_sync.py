"""Delta sync against the fake: first sync, incremental changes, renames without
downloads, scope, resync after 410, the delete limit and retries of failed items."""

import hashlib
import json

from ingestd_sharepoint.http import USER_AGENT


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta(sp, key):
    return sp.meta(key)


def test_first_sync_as_a_process_then_a_quiet_one(sp):
    files = {
        "Welcome.docx": b"PK\x03\x04 word document " * 40,
        "Contracts/2024/acme.pdf": b"%PDF-1.4\n acme " * 30,
        "Contracts/2024/globex.pdf": b"%PDF-1.4\n globex " * 30,
        "Contracts/notes.txt": b"remember the milk\n",
        "Budget/forecast.csv": b"month,amount\njan,10\n",
    }
    ids = {path: sp.drive.add(path, data) for path, data in files.items()}

    result, manifest = sp.cli()
    assert result.returncode == 0, result.stderr
    assert manifest["status"] == "succeeded"
    assert manifest["counters"]["ingested"] == len(files) and manifest["counters"]["failed"] == 0
    stored = {i["origin_uri"]: i for i in sp.items(manifest)}
    for path, item_id in ids.items():
        node = sp.drive.nodes[item_id]
        doc = sp.doc(item_id)
        assert doc.origin_uri == sp.drive.web_url(node) and doc.origin_uri in stored
        assert doc.sha256 == sha(files[path]) and sp.blob(doc.sha256) == files[path]
        assert doc.metadata["item_id"] == item_id and doc.metadata["drive_id"] == sp.drive.id
        assert doc.metadata["site_id"] == sp.site.id and doc.metadata["path"] == path
        assert doc.metadata["etag"].startswith('"{') and doc.metadata["last_modified_by"] == "megan@contoso.com"
        assert doc.metadata["quick_xor_hash"] == node.quick_xor()
        assert doc.source_modified_at.endswith("Z")
    assert sp.doc(ids["Contracts/2024/acme.pdf"]).metadata["content_type"] == "application/pdf"

    graph = sp.fake.graph()
    assert {r.kind for r in sp.fake.records} == {"openid", "token", "graph", "download"}
    assert all(r.headers["user-agent"] == USER_AGENT for r in sp.fake.records)
    assert USER_AGENT.startswith("NONISV|ingestd|ingestd/")
    deltas = [r for r in graph if r.path.endswith("/root/delta")]
    assert len(deltas) >= 3 and "$skiptoken" in deltas[1].query  # several pages, followed by nextLink
    assert graph[0].path == f"/v1.0/sites/{sp.site.host}:{sp.site.path}"
    assert graph[1].path == f"/v1.0/sites/{sp.site.id}/drives"
    link = meta(sp, "delta_link")
    assert link and link.startswith(sp.fake.base_url) and "token=" in link

    before = len(sp.fake.records)
    quiet = sp.run()  # in this process: only the state directory carries over from the CLI run
    assert quiet.status == "succeeded" and quiet.counters.ingested == 0 and quiet.counters.discovered == 0
    again = sp.fake.records[before:]
    assert not [r for r in again if r.path.endswith("/content") or "/sites/" in r.path]  # ids cached, nothing fetched
    delta = [r for r in again if r.path.endswith("/root/delta")]
    assert len(delta) == 1 and delta[0].query.get("token") == [link.split("token=")[1]]


def test_incremental_sync_adds_edits_renames_moves_and_deletes(sp):
    keep = sp.drive.add("keep.txt", b"untouched")
    edit = sp.drive.add("edit.txt", b"version one")
    rename = sp.drive.add("old-name.txt", b"renamed content")
    move = sp.drive.add("A/moved.txt", b"moved content")
    gone = sp.drive.add("gone.txt", b"soon deleted")
    assert sp.run().status == "succeeded"
    first_downloads = len(sp.downloads())

    sp.drive.edit("edit.txt", b"version two")
    sp.drive.rename("old-name.txt", "new-name.txt")
    sp.drive.move("A/moved.txt", "B/C")
    sp.drive.delete("gone.txt")
    added = sp.drive.add("B/new.txt", b"brand new")
    m = sp.run()

    assert m.status == "succeeded", m.errors
    c = m.counters
    assert (c.ingested, c.unchanged, c.deleted, c.failed) == (2, 2, 1, 0)
    assert sorted(sp.downloads()[first_downloads:]) == sorted([edit, added])  # renames cost no download
    assert [v.sha256 for v in sp.doc(edit).versions] == [sha(b"version one")]
    assert sp.doc(edit).sha256 == sha(b"version two")
    renamed = sp.doc(rename)
    assert renamed.origin_uri.endswith("/new-name.txt") and renamed.metadata["path"] == "new-name.txt"
    # a rename is a metadata version: the same bytes, and the version before keeps its name
    [before] = renamed.versions
    assert (renamed.kind, before.kind) == ("metadata", "content") and before.origin_uri.endswith("/old-name.txt")
    assert renamed.sha256 == before.sha256 == sha(b"renamed content") and before.metadata["path"] == "old-name.txt"
    moved = sp.doc(move)
    assert moved.origin_uri.endswith("/B/C/moved.txt") and moved.metadata["path"] == "B/C/moved.txt"
    assert moved.kind == "metadata" and [v.origin_uri.rsplit("/", 2)[-2] for v in moved.versions] == ["A"]
    assert moved.sha256 == sha(b"moved content")
    assert sp.doc(gone).deleted_at is not None and sp.doc(gone).deleted_job == m.job_id
    assert sp.doc(keep).versions == [] and sp.doc(keep).deleted_at is None


def test_an_item_twice_in_one_delta_last_wins(sp):
    item = sp.drive.add("draft.txt", b"first")
    sp.run()
    sp.drive.edit("draft.txt", b"second")
    sp.drive.rename("draft.txt", "final.txt")
    sp.drive.edit("final.txt", b"third")
    before, seen = len(sp.downloads()), len(sp.fake.records)
    m = sp.run()
    served = [v for r in sp.fake.records[seen:] if r.path.endswith("/root/delta") for v in r.body["value"]]
    assert [v.get("name") for v in served if v["id"] == item] == ["draft.txt", "final.txt", "final.txt"]
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.downloads()[before:] == [item]
    doc = sp.doc(item)
    assert doc.sha256 == sha(b"third") and doc.origin_uri.endswith("/final.txt")
    assert [v.sha256 for v in doc.versions] == [sha(b"first")]


def test_renaming_a_folder_repoints_its_files_without_downloading(sp):
    a = sp.drive.add("Projects/Alpha/plan.txt", b"alpha plan")
    b = sp.drive.add("Projects/Alpha/deep/spec.txt", b"alpha spec")
    other = sp.drive.add("Projects/Beta/plan.txt", b"beta plan")
    sp.run()
    before = len(sp.downloads())

    folder = sp.drive.folder("Projects/Alpha")
    sp.drive.rename("Projects/Alpha", "Omega")
    m = sp.run()

    assert m.status == "succeeded" and m.counters.unchanged == 2 and m.counters.ingested == 0
    assert sp.downloads()[before:] == []
    assert sp.doc(a).origin_uri.endswith("/Projects/Omega/plan.txt")
    assert sp.doc(b).origin_uri.endswith("/Projects/Omega/deep/spec.txt")
    assert sp.doc(b).metadata["path"] == "Projects/Omega/deep/spec.txt"
    assert sp.doc(other).origin_uri.endswith("/Projects/Beta/plan.txt")
    listed = {r.path.split("/")[-2] for r in sp.fake.graph() if r.path.endswith("/children")}
    assert listed == {folder, sp.drive.folder("Projects/Omega/deep")}


def test_folder_scope_and_filters_follow_moves_in_and_out(sp):
    sp.write(folder="Contracts", include=["**/*.pdf"])
    inside = sp.drive.add("Contracts/2024/acme.pdf", b"%PDF acme")
    sp.drive.add("Contracts/readme.txt", b"not a pdf")
    outside = sp.drive.add("Other/globex.pdf", b"%PDF globex")
    sp.drive.add("Other/filler-1.pdf", b"%PDF 1")
    m = sp.run()
    assert m.counters.ingested == 1 and sp.doc(inside).metadata["path"] == "Contracts/2024/acme.pdf"

    sp.drive.move("Other/globex.pdf", "Contracts")  # moved into scope: now ingested
    sp.drive.add("Contracts/2024/initech.pdf", b"%PDF initech")
    m = sp.run()
    assert m.counters.ingested == 2 and sp.doc(outside).origin_uri.endswith("/Contracts/globex.pdf")

    sp.drive.move("Contracts/globex.pdf", "Archive")  # moved out of scope: tombstoned
    m = sp.run()
    assert m.counters.deleted == 1 and sp.doc(outside).deleted_at is not None


def test_missing_folder_fails_the_job_as_not_found(sp):
    sp.write(folder="Nope")
    sp.drive.add("a.txt", b"a")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "not_found" and "'Nope'" in m.errors[0].message


def test_unknown_library_fails_naming_the_ones_there(sp):
    sp.write(library="Archives")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "not_found"
    assert "'Archives'" in m.errors[0].message and "'Documents'" in m.errors[0].message


def test_unknown_site_fails_as_not_found(sp):
    sp.write(site_url="https://contoso.sharepoint.com/sites/nope")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "not_found"
    assert "site https://contoso.sharepoint.com/sites/nope not found" in m.errors[0].message
    assert m.errors[0].request_id == sp.fake.graph()[0].request_id


def test_the_root_site_is_addressed_by_host(sp):
    root = sp.fake.add_site(path="", title="Contoso")
    item = root.add_drive().add("hello.txt", b"hi")
    sp.write(site_url="https://contoso.sharepoint.com/")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1 and sp.doc(item).metadata["site_id"] == root.id
    assert sp.fake.graph()[0].path == "/v1.0/sites/contoso.sharepoint.com"


def test_library_found_by_its_url_name(sp):
    sp.write(library="Shared Documents")
    sp.drive.add("a.txt", b"a")
    assert sp.run().counters.ingested == 1


def test_expired_delta_link_resyncs_and_reconciles(sp):
    stay = sp.drive.add("stay.txt", b"stays")
    vanish = sp.drive.add("vanish.txt", b"vanishes")
    sp.drive.add("filler/1.txt", b"1")
    sp.drive.add("filler/2.txt", b"2")
    sp.run()
    before = len(sp.downloads())
    sp.drive.delete("vanish.txt")
    fresh = sp.drive.add("fresh.txt", b"fresh")
    sp.drive.invalidate_tokens()

    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert (m.counters.ingested, m.counters.deleted) == (1, 1)
    assert sp.downloads()[before:] == [fresh]  # unchanged files are not fetched again
    assert sp.doc(vanish).deleted_at is not None and sp.doc(stay).deleted_at is None
    gone = [r for r in sp.fake.graph() if r.status == 410]
    assert len(gone) == 1
    after = [r for r in sp.fake.graph() if r.started > gone[0].started and r.path.endswith("/root/delta")]
    assert after and after[0].query == {}  # re-enumerated from scratch, at the Location given


def test_delete_limit_refuses_the_run_and_keeps_the_delta_link(sp):
    ids = [sp.drive.add(f"f{i}.txt", f"file {i}".encode()) for i in range(4)]
    sp.run()
    link = meta(sp, "delta_link")
    for i in range(3):
        sp.drive.delete(f"f{i}.txt")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "delete_limit"
    assert "3 of 4" in m.errors[0].message and "max_delete_fraction" in m.errors[0].message
    assert all(sp.doc(i).deleted_at is None for i in ids) and meta(sp, "delta_link") == link

    sp.write(max_delete_fraction=0.8)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 3


def test_on_delete_ignore_keeps_documents(sp):
    sp.write(on_delete="ignore")
    item = sp.drive.add("a.txt", b"a")
    sp.drive.add("b.txt", b"b")
    sp.run()
    sp.drive.delete("a.txt")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 0 and sp.doc(item).deleted_at is None


def test_corrupt_download_fails_the_item_and_is_retried_next_run(sp):
    good = sp.drive.add("good.txt", b"good bytes")
    bad = sp.drive.add("bad.txt", b"the real bytes")
    sp.drive.nodes[bad].served = b"the evil bytes"  # same size, different content
    m = sp.run()
    assert m.status == "partial" and m.counters.ingested == 1 and m.counters.failed == 1
    error = m.errors[0]
    assert error.code == "integrity" and "quickXorHash" in error.message
    served = [r for r in sp.fake.of_kind("download") if r.query["UniqueId"] == [sp.drive.nodes[bad].guid]]
    assert error.request_id == served[0].request_id  # support can find the response that was wrong
    assert error.item == sp.drive.web_url(sp.drive.nodes[bad])
    assert sp.doc(good).sha256 == sha(b"good bytes")
    assert not list((sp.state / "workspace").rglob("*.download"))  # the bad bytes are not left behind

    sp.drive.nodes[bad].served = None  # fixed at the source, without any change to the item
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.doc(bad).sha256 == sha(b"the real bytes")
    assert any(r.path.endswith(f"/items/{bad}") for r in sp.fake.graph())  # fetched by id, not by delta


def test_size_mismatch_is_an_integrity_failure(sp):
    item = sp.drive.add("short.txt", b"0123456789")
    sp.drive.nodes[item].served = b"01234"
    m = sp.run()
    assert m.status == "partial" and m.errors[0].code == "integrity" and "size 10" in m.errors[0].message


def test_files_over_max_file_size_are_skipped(sp):
    sp.write(max_file_size=100)
    sp.drive.add("small.txt", b"x" * 100)
    big = sp.drive.add("big.bin", b"x" * 101)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1 and m.counters.skipped == 1
    assert m.errors[0].code == "too_large" and big not in sp.downloads()


def test_a_dropped_download_resumes_with_a_range_request(sp):
    data = bytes(range(256)) * 4096  # 1 MiB
    item = sp.drive.add("resume.bin", data)
    sp.fake.cuts[item] = 300_000
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert sp.doc(item).sha256 == sha(data)
    ranges = [r.headers.get("range") for r in sp.fake.of_kind("download")]
    assert ranges[0] is None and len(ranges) == 2
    start = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 300_000  # carried on from (about) where the connection dropped


def test_an_expired_download_url_is_replaced_and_the_download_resumed(sp):
    data = bytes(range(256)) * 4096
    item = sp.drive.add("resume.bin", data)
    sp.fake.cuts[item] = 300_000
    sp.fake.cut_expires_url = True
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert sp.doc(item).sha256 == sha(data)
    assert sp.content_calls() == [item]  # the listed URL expired: /content for a fresh one
    statuses = [(r.status, bool(r.headers.get("range"))) for r in sp.fake.of_kind("download")]
    assert statuses == [(200, False), (401, True), (206, True)]


def test_state_is_json_free_of_secrets(sp):
    sp.drive.add("a.txt", b"a")
    sp.run()
    [(drive_id, _, target, retired)] = sp.index("libraries")
    assert drive_id == sp.drive.id and json.loads(target)["drive_id"] == sp.drive.id and retired == 0
    assert {json.loads(value)["drive_id"] for key, value in sp.index("lookups") if len(json.loads(key)) == 3} \
        == {sp.drive.id}
