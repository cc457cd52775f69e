"""What a document's metadata says about its item (issue 19 item 2): who made and changed
it and when, where it lives; and SharePoint list columns (`columns`), read from the list's
delta with the columns selected up front: no request per item, and a column-only edit
re-points the document with no download."""

import json

import pytest
from pydantic import ValidationError

from ingestd_sharepoint.options import SharePointOptions


def graph_since(sp, since: int) -> list:
    return [r for r in sp.fake.records[since:] if r.kind == "graph"]


def test_every_document_says_who_made_and_changed_it_when_and_where(sp):
    item = sp.drive.add("Contracts/acme.pdf", b"%PDF acme", by="megan")
    sp.drive.edit("Contracts/acme.pdf", b"%PDF acme v2", by="alex")
    assert sp.run().status == "succeeded"
    node = sp.drive.nodes[item]
    meta = sp.doc(item).metadata
    assert meta["created_by"] == "megan@contoso.com" and meta["last_modified_by"] == "alex@contoso.com"
    assert meta["created_at"] == node.created.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["last_modified_at"] == node.modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["web_url"] == sp.drive.web_url(node) and meta["path"] == "Contracts/acme.pdf"
    assert (meta["drive_id"], meta["site_id"], meta["site_url"]) == (sp.drive.id, sp.site.id, sp.site.web_url)
    assert "columns" not in meta and "permissions" not in meta


def test_configured_columns_are_in_every_document_at_no_cost_per_item(sp):
    ids = [sp.drive.add(f"Contracts/{n}.pdf", f"%PDF {n}".encode()) for n in range(7)]
    sp.drive.set_fields("Contracts/0.pdf", Department="Legal", ReviewDate="2025-03-01T00:00:00Z")
    sp.drive.set_fields("Contracts/1.pdf", Department="Finance", Internal="not asked for")
    sp.write(columns=["Department", "ReviewDate"])

    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == len(ids)
    columns = [sp.doc(i).metadata["columns"] for i in ids]
    assert columns[0] == {"Department": "Legal", "ReviewDate": "2025-03-01T00:00:00Z"}
    assert columns[1] == {"Department": "Finance", "ReviewDate": None}
    assert all(c == {"Department": None, "ReviewDate": None} for c in columns[2:])
    graph = graph_since(sp, 0)
    assert not [r.path for r in graph if "/drives/" in r.path and "/items/" in r.path], "a request per item"
    lists = [r for r in graph if r.path.endswith("/items/delta")]
    assert lists and all(r.query["$expand"] == ["fields($select=Department,ReviewDate)"] for r in lists)
    assert [r.path for r in graph].count(f"/v1.0/drives/{sp.drive.id}/list") == 1  # the list's id, once

    before = len(sp.fake.records)
    assert sp.run().counters.discovered == 0
    quiet = graph_since(sp, before)  # one delta of the drive, one of its list
    assert [r.path for r in quiet] == [f"/v1.0/drives/{sp.drive.id}/root/delta",
                                       f"/v1.0/sites/{sp.site.id}/lists/{sp.drive.list_id}/items/delta"]
    assert all("token" in r.query for r in quiet)


def test_a_column_only_edit_re_points_the_document_without_a_download(sp):
    item = sp.drive.add("report.docx", b"PK report")
    other = sp.drive.add("other.docx", b"PK other")
    sp.write(columns=["Department"])
    assert sp.run().status == "succeeded"
    first = sp.doc(item)
    downloads = len(sp.downloads())

    sp.drive.set_fields("report.docx", Department="Audit")
    m = sp.run()

    assert m.status == "succeeded" and (m.counters.ingested, m.counters.unchanged) == (0, 1)
    assert sp.downloads()[downloads:] == []
    doc = sp.doc(item)
    assert doc.metadata["columns"] == {"Department": "Audit"} and doc.sha256 == first.sha256
    assert doc.metadata["etag"] != first.metadata["etag"]  # a column edit changes the item's eTag
    assert sp.doc(other).metadata["columns"] == {"Department": None}
    assert sp.content_calls() == []  # Graph's /content never asked, this run or the first
    [before] = doc.versions  # history kept: a metadata version over the content one, which is not rewritten
    assert (doc.version, doc.kind, before.kind) == (2, "metadata", "content")
    assert before.metadata["columns"] == {"Department": None} and before.metadata["etag"] == first.metadata["etag"]
    assert [(c.type, c.version, c.sha256) for c in sp.changes(item)] == [
        ("stored", 1, first.sha256), ("updated", 2, first.sha256)]
    assert [c.type for c in sp.changes(other)] == ["stored"]


def test_a_column_edit_between_the_two_reads_is_not_missed(sp):
    """The drive's delta is read before the list's: an edit landing in between shows in
    the list's delta only, and is taken from there."""
    item = sp.drive.add("report.docx", b"PK report")
    sp.write(columns=["Department"])
    assert sp.run().status == "succeeded"
    downloads = len(sp.downloads())
    edited = []

    def edit_before_the_list_delta(rec):
        if rec.path.endswith("/items/delta") and not edited:
            edited.append(sp.drive.set_fields("report.docx", Department="Audit"))
        return False

    sp.fake.fail(match=edit_before_the_list_delta)
    m = sp.run()

    assert edited and m.status == "succeeded"
    assert sp.doc(item).metadata["columns"] == {"Department": "Audit"} and sp.downloads()[downloads:] == []


def test_adding_a_column_reads_it_for_every_document_without_downloads(sp):
    ids = [sp.drive.add(f"{n}.txt", b"x" * n) for n in range(1, 4)]
    sp.drive.set_fields("2.txt", Department="Legal", Owner="Adele")
    sp.write(columns=["Department"])
    assert sp.run().status == "succeeded"
    downloads = len(sp.downloads())

    sp.write(columns=["Department", "Owner"])
    m = sp.run()

    assert m.status == "succeeded" and sp.downloads()[downloads:] == []
    assert [sp.doc(i).metadata["columns"] for i in ids] == [
        {"Department": None, "Owner": None}, {"Department": "Legal", "Owner": "Adele"},
        {"Department": None, "Owner": None}]


def test_files_back_from_the_recycle_bin_keep_their_columns(sp):
    item = sp.drive.add("Box/report.docx", b"PK report")
    sp.drive.set_fields("Box/report.docx", Department="Audit")
    sp.write(columns=["Department"], max_delete_fraction=1.0)
    assert sp.run().status == "succeeded"
    folder = sp.drive.delete("Box")
    assert sp.run().counters.deleted == 1
    downloads = len(sp.downloads())

    sp.drive.restore(folder)  # the folder alone is reported; its file is listed from it
    m = sp.run()

    assert m.status == "succeeded" and sp.doc(item).deleted_at is None and sp.downloads()[downloads:] == []
    assert sp.doc(item).metadata["columns"] == {"Department": "Audit"}


def test_column_values_too_long_are_kept_as_null(sp):
    item = sp.drive.add("a.txt", b"a")
    sp.drive.set_fields("a.txt", Notes="x" * 20_000, Department="Legal")
    sp.write(columns=["Notes", "Department"])
    assert sp.run().status == "succeeded"
    assert sp.doc(item).metadata["columns"] == {"Notes": None, "Department": "Legal"}


@pytest.mark.parametrize("columns", [["Bad Name"], ["a)$expand=x"], ["x" * 300], ["A", "A"]])
def test_columns_must_be_internal_names(columns):
    with pytest.raises(ValidationError, match="columns"):
        SharePointOptions.model_validate({"site_url": "https://contoso.sharepoint.com/sites/x", "credentials": "sp",
                                          "columns": columns})


def test_the_scope_key_is_0_1s_unless_the_new_keys_are_set():
    """Upgrading re-reads no library: the key a 0.1 library was saved with (site and
    library taken out by the migration) is the key computed now."""
    base = {"site_url": "https://contoso.sharepoint.com/sites/x", "credentials": "sp"}
    key = SharePointOptions.model_validate(base).scope_key()
    assert sorted(key) == ["exclude", "folder", "graph_url", "include", "max_file_size"]
    with_columns = SharePointOptions.model_validate({**base, "columns": ["Department"]}).scope_key()
    assert with_columns["columns"] == ["Department"]
    assert json.dumps(key, sort_keys=True) != json.dumps(with_columns, sort_keys=True)
