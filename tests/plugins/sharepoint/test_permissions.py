"""Effective permissions as versioned metadata (issue 19 item 3, `permissions = true`):
inherited and unique permissions resolved across a three-level folder tree, sharing
links kept without their secret URL, a permission-only change re-pointing the documents
it reaches with no download, and what a quiet run costs with the delta's sharing-change
preferences (one request) and without them (one per file)."""

import json

from ingestd_sharepoint.access import PREFER, entries_of

LEGAL_GROUPS = ["Legal Members", "Legal Owners", "Legal Visitors"]


def graph_since(sp, since: int) -> list:
    return [r for r in sp.fake.records[since:] if r.kind == "graph"]


def permission_reads(sp, since: int = 0) -> list[str]:
    return [r.path.split("/")[-2] for r in graph_since(sp, since) if r.path.endswith("/permissions")]


def tree(sp) -> dict[str, str]:
    """Three levels under the root, inheritance broken once in the middle:

        top.txt             inherits the root (the site's groups)
        A/top-a.txt         inherits the root through A
        A/B/                its own: the root's, plus Adele (read)
        A/B/mid.txt         inherits B
        A/B/C/deep.txt      inherits B, two levels up
        A/B/C/own.txt       its own: B's, plus an organization-wide view link
    """
    d = sp.drive
    ids = {p: d.add(p, p.encode()) for p in ("top.txt", "A/top-a.txt", "A/B/mid.txt", "A/B/C/deep.txt",
                                              "A/B/C/own.txt")}
    d.grant("A/B", "adele", ["read"])
    d.share_link("A/B/C/own.txt", "view", "organization")
    return ids


def snapshot(sp, item_id: str) -> dict:
    return sp.doc(item_id).metadata["permissions"]


def test_effective_permissions_resolved_across_a_three_level_tree(sp):
    ids = tree(sp)
    sp.write(permissions=True)

    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == len(ids)
    for path, item_id in ids.items():  # each equals what Graph lists for the file itself
        node = sp.drive.nodes[item_id]
        assert snapshot(sp, item_id)["entries"] == entries_of(sp.drive.permissions_json(node)), path
    root, b = sp.drive.root_id, sp.drive.id_of("A/B")
    assert snapshot(sp, ids["top.txt"])["inherited_from"] == {"item_id": root, "path": ""}
    assert snapshot(sp, ids["A/top-a.txt"])["inherited_from"] == {"item_id": root, "path": ""}
    for path in ("A/B/mid.txt", "A/B/C/deep.txt"):
        assert snapshot(sp, ids[path])["inherited"] is True
        assert snapshot(sp, ids[path])["inherited_from"] == {"item_id": b, "path": "A/B"}
    own = snapshot(sp, ids["A/B/C/own.txt"])
    assert own["inherited"] is False and "inherited_from" not in own
    names = lambda snap: sorted(e["granted_to"]["name"] for e in snap["entries"] if "link" not in e)
    assert names(snapshot(sp, ids["top.txt"])) == LEGAL_GROUPS
    assert names(snapshot(sp, ids["A/B/C/deep.txt"])) == sorted(LEGAL_GROUPS + ["Adele Vance"])
    assert [e["link"] for e in own["entries"] if "link" in e] == [
        {"type": "view", "scope": "organization", "preventsDownload": False}]
    digests = {p: snapshot(sp, i)["digest"] for p, i in ids.items()}
    assert digests["top.txt"] == digests["A/top-a.txt"] and digests["A/B/mid.txt"] == digests["A/B/C/deep.txt"]
    assert len(set(digests.values())) == 3
    # only the roots of permission hierarchies were asked: the library root, B, own.txt
    assert sorted(permission_reads(sp)) == sorted([root, b, ids["A/B/C/own.txt"]])
    deltas = [r for r in graph_since(sp, 0) if r.path.endswith("/root/delta")]
    assert deltas and all(r.headers["prefer"] == PREFER for r in deltas)


def test_sharing_links_are_kept_without_their_secret_url(sp):
    item = sp.drive.add("shared.docx", b"PK shared")
    sp.drive.share_link("shared.docx", "edit", "anonymous")
    sp.drive.share_link("shared.docx", "view", "users", people=["alex"])
    sp.write(permissions=True)
    assert sp.run().status == "succeeded"
    kept = json.dumps(sp.doc(item).metadata)
    for grant in sp.drive.nodes[item].grants:
        if "link" in grant:
            assert grant["link"]["webUrl"] not in kept and grant["shareId"] not in kept
    links = [e for e in snapshot(sp, item)["entries"] if "link" in e]
    assert sorted((e["link"]["scope"], e["roles"][0]) for e in links) == [("anonymous", "write"), ("users", "read")]
    assert [p["email"] for e in links for p in e.get("granted_to", [])] == ["alex@contoso.com"]


def test_a_permission_only_change_re_points_what_it_reaches_without_a_download(sp):
    ids = tree(sp)
    sp.write(permissions=True)
    assert sp.run().status == "succeeded"
    before_snapshots = {p: snapshot(sp, i) for p, i in ids.items()}
    content = {p: sp.doc(i).sha256 for p, i in ids.items()}
    downloads, records = len(sp.downloads()), len(sp.fake.records)

    sp.drive.grant("A/B", "alex", ["write"])  # B has its own permissions: mid and deep inherit them
    m = sp.run()

    assert m.status == "succeeded" and (m.counters.ingested, m.counters.unchanged) == (0, 2)
    assert sp.downloads()[downloads:] == []
    assert permission_reads(sp, records) == [sp.drive.id_of("A/B")]  # B alone, from its sharedChanged
    assert sp.content_calls() == []
    for path in ids:
        after = snapshot(sp, ids[path])
        if path in ("A/B/mid.txt", "A/B/C/deep.txt"):
            doc = sp.doc(ids[path])
            assert after["digest"] != before_snapshots[path]["digest"]
            assert "Alex Wilber" in [e["granted_to"]["name"] for e in after["entries"]]
            assert (doc.sha256, doc.version, doc.kind) == (content[path], 2, "permissions")
            [before] = doc.versions  # the history keeps who could read it before
            assert before.kind == "content" and before.metadata["permissions"] == before_snapshots[path]
            assert [(c.type, c.version, c.sha256) for c in sp.changes(ids[path])] == [
                ("stored", 1, content[path]), ("acl_changed", 2, content[path])]
        else:
            assert after == before_snapshots[path], path
            assert [c.type for c in sp.changes(ids[path])] == ["stored"]


def test_inheritance_restored_and_broken_moves_the_files_to_their_new_source(sp):
    ids = tree(sp)
    sp.write(permissions=True)
    assert sp.run().status == "succeeded"

    sp.drive.reset_inheritance("A/B")  # B inherits the root again; own.txt keeps its own
    m = sp.run()
    assert m.status == "succeeded" and m.counters.unchanged == 2
    for path in ("A/B/mid.txt", "A/B/C/deep.txt"):
        assert snapshot(sp, ids[path])["inherited_from"]["item_id"] == sp.drive.root_id
        assert snapshot(sp, ids[path])["digest"] == snapshot(sp, ids["top.txt"])["digest"]
    assert snapshot(sp, ids["A/B/C/own.txt"])["inherited"] is False

    sp.drive.break_inheritance("A/B/C")  # the same entries, but C's own from now on
    m = sp.run()
    assert m.status == "succeeded" and m.counters.unchanged == 1
    deep = snapshot(sp, ids["A/B/C/deep.txt"])
    assert deep["inherited_from"] == {"item_id": sp.drive.id_of("A/B/C"), "path": "A/B/C"}
    assert deep["entries"] == snapshot(sp, ids["top.txt"])["entries"] and deep["digest"] != snapshot(
        sp, ids["top.txt"])["digest"]


def test_a_quiet_run_costs_one_delta_request_when_the_delta_reports_sharing_changes(sp):
    ids = tree(sp)
    sp.write(permissions=True)
    assert sp.run().status == "succeeded"
    before = len(sp.fake.records)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.discovered == 0
    assert [r.path for r in graph_since(sp, before)] == [f"/v1.0/drives/{sp.drive.id}/root/delta"]
    assert len(ids) == 5


def test_without_the_delta_preferences_a_quiet_run_asks_every_file(sp):
    """`permission_changes = "every_run"`: one request per document and run, the cost the
    delta preferences save; changes are still caught."""
    ids = tree(sp)
    sp.write(permissions=True, permission_changes="every_run")
    assert sp.run().status == "succeeded"
    before = len(sp.fake.records)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.discovered == 0
    graph = graph_since(sp, before)
    assert [r.path for r in graph if not r.path.endswith("/permissions")] == [
        f"/v1.0/drives/{sp.drive.id}/root/delta"]
    assert sorted(permission_reads(sp, before)) == sorted(ids.values())  # 1 + 5 requests
    assert all("prefer" not in r.headers for r in graph)
    for path, item_id in ids.items():
        assert snapshot(sp, item_id)["entries"] == entries_of(sp.drive.permissions_json(sp.drive.nodes[item_id]))

    downloads = len(sp.downloads())
    sp.drive.grant("A/B", "alex", ["write"])
    m = sp.run()
    assert m.status == "succeeded" and m.counters.unchanged == 2 and sp.downloads()[downloads:] == []


def test_turning_permissions_on_versions_every_document_without_downloads(sp):
    ids = tree(sp)
    assert sp.run().status == "succeeded"
    downloads = len(sp.downloads())
    sp.write(permissions=True)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.unchanged == len(ids) and sp.downloads()[downloads:] == []
    assert all("permissions" in sp.doc(i).metadata for i in ids.values())
    assert all([(c.type, c.version) for c in sp.changes(i)] == [("stored", 1), ("acl_changed", 2)]
               for i in ids.values())  # permissions now known: a permissions version each
    sp.write()
    assert sp.run().status == "succeeded" and sp.downloads()[downloads:] == []
    assert all("permissions" not in sp.doc(i).metadata and sp.changes(i)[-1].type == "acl_changed"
               for i in ids.values())  # and no longer known: one more, saying nothing of who may read


def test_an_app_not_allowed_to_read_permissions_is_told_which_it_needs(sp):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(status=403, count=100, retry_after=None, match=lambda r: r.path.endswith("/permissions"))
    sp.write(permissions=True)
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "permission"
    assert "Sites.FullControl.All" in m.errors[0].message and "fullcontrol" in m.errors[0].message
    assert sp.meta("delta_link") is None
