"""More than one library per source (issue 19 item 4): a list of libraries, every library
of a site (`"*"`), several sites, OneDrive personal sites and Teams channels' sites. Each
library keeps its own delta link: a quiet run costs one delta request per library, and
adding a library later re-reads none of the others."""

import hashlib


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def graph_since(sp, since: int) -> list:
    return [r for r in sp.fake.records[since:] if r.kind == "graph"]


def delta_path(drive) -> str:
    return f"/v1.0/drives/{drive.id}/root/delta"


def three_libraries(sp):
    contracts = sp.site.add_drive("Contracts", "Contracts")
    board = sp.site.add_drive("Board Papers", "Board Papers")
    ids = {sp.drive.add("welcome.txt", b"welcome"): sp.drive,
           sp.drive.add("Policies/travel.txt", b"travel policy"): sp.drive,
           contracts.add("2024/acme.pdf", b"%PDF acme"): contracts,
           board.add("minutes.docx", b"PK minutes"): board}
    return [sp.drive, contracts, board], ids


def test_a_quiet_run_over_three_libraries_costs_three_delta_requests_plus_the_token(sp):
    drives, ids = three_libraries(sp)
    sp.write(library=["Documents", "Contracts", "Board Papers"])
    result, manifest = sp.cli()
    assert result.returncode == 0 and manifest["status"] == "succeeded", result.stderr
    assert manifest["counters"]["ingested"] == len(ids)
    for item_id, drive in ids.items():
        doc = sp.doc(item_id)
        assert doc.metadata["drive_id"] == drive.id and doc.metadata["library"] == drive.name
        assert doc.origin_uri == drive.web_url(drive.nodes[item_id])
    links = [sp.meta("delta_link", d) for d in drives]
    assert all(links) and len(set(links)) == 3  # one delta link per library

    before = len(sp.fake.records)
    result, manifest = sp.cli()  # a process of its own: it signs in again

    assert result.returncode == 0 and manifest["status"] == "succeeded"
    assert manifest["counters"]["discovered"] == 0 and manifest["counters"]["ingested"] == 0
    graph = graph_since(sp, before)
    assert sorted(r.path for r in graph) == sorted(delta_path(d) for d in drives)
    assert sorted(r.query["token"][0] for r in graph) == sorted(link.rpartition("token=")[2] for link in links)
    assert [r.kind for r in sp.fake.records[before:] if r.kind not in ("graph", "openid")] == ["token"]


def test_adding_a_library_later_reads_only_that_library_from_the_start(sp):
    drives, ids = three_libraries(sp)
    sp.write(library=["Documents", "Contracts"])
    assert sp.run().status == "succeeded"
    assert sp.meta("delta_link", drives[2]) is None
    links = [sp.meta("delta_link", d) for d in drives[:2]]
    downloaded = len(sp.downloads())

    sp.write(library=["Documents", "Contracts", "Board Papers"])
    before = len(sp.fake.records)
    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == 1
    deltas = {r.path: r.query for r in graph_since(sp, before) if r.path.endswith("/root/delta")}
    assert deltas[delta_path(drives[0])]["token"] == [links[0].rpartition("token=")[2]]
    assert deltas[delta_path(drives[1])]["token"] == [links[1].rpartition("token=")[2]]
    assert "token" not in deltas[delta_path(drives[2])]  # the new library: enumerated from the start
    board_item = next(i for i, d in ids.items() if d is drives[2])
    assert sp.downloads()[downloaded:] == [board_item]


def test_every_library_of_a_site_and_a_library_made_since(sp):
    drives, ids = three_libraries(sp)
    sp.write(library="*")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == len(ids)

    before = len(sp.fake.records)
    assert sp.run().counters.discovered == 0
    graph = graph_since(sp, before)  # the site's libraries are listed again, to see new ones
    assert sorted(r.path for r in graph) == sorted([f"/v1.0/sites/{sp.site.id}/drives"]
                                                   + [delta_path(d) for d in drives])

    archive = sp.site.add_drive("Archive", "Archive")
    old = archive.add("1999/report.txt", b"old report")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1 and sp.doc(old).metadata["library"] == "Archive"


def test_several_sites_a_personal_site_and_a_teams_private_channel(sp, fake):
    """A OneDrive is the personal site's "Documents" library
    (`https://<tenant>-my.sharepoint.com/personal/<user>`); a private or shared channel
    has a site of its own (`/sites/<team>-<channel>`)."""
    onedrive = fake.add_site("contoso-my.sharepoint.com", "/personal/megan_contoso_com", "Megan Bowen")
    megan = onedrive.add_drive("Documents", "Documents", drive_type="business")
    channel = fake.add_site(path="/sites/Marketing-Budget", title="Marketing-Budget")
    budget = channel.add_drive()
    ids = {sp.drive.add("legal.txt", b"legal"): sp.drive, megan.add("notes/todo.txt", b"megan's notes"): megan,
           budget.add("Budget/2025.xlsx", b"PK budget"): budget}
    sp.write(site_url=[sp.site.web_url, onedrive.web_url, channel.web_url])

    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == 3
    for item_id, drive in ids.items():
        doc = sp.doc(item_id)
        assert doc.metadata["site_url"] == drive.site.web_url and doc.metadata["site_id"] == drive.site.id
        assert doc.origin_uri.startswith(drive.site.web_url + "/")
    assert sp.doc(next(iter(ids))).origin_uri.startswith("https://contoso.sharepoint.com/sites/legal/")
    assert sp.doc(list(ids)[1]).origin_uri.startswith(
        "https://contoso-my.sharepoint.com/personal/megan_contoso_com/Documents/notes/")
    before = len(sp.fake.records)
    assert sp.run().counters.discovered == 0
    assert sorted(r.path for r in graph_since(sp, before)) == sorted(delta_path(d) for d in ids.values())


def test_a_teams_standard_channel_is_a_folder_of_the_team_site(sp, fake):
    team = fake.add_site(path="/sites/Marketing", title="Marketing")
    docs = team.add_drive()
    general = docs.add("General/kickoff.pptx", b"PK kickoff")
    docs.add("Campaigns/spring.docx", b"PK spring")  # another channel's folder
    sp.write(site_url=team.web_url, folder="General")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.doc(general).metadata["path"] == "General/kickoff.pptx"


def test_a_library_no_longer_configured_is_tombstoned_and_restored_when_named_again(sp):
    drives, ids = three_libraries(sp)
    sp.write(library=["Documents", "Contracts", "Board Papers"], max_delete_fraction=0.5)
    assert sp.run().status == "succeeded"
    board_item = next(i for i, d in ids.items() if d is drives[2])
    downloaded = len(sp.downloads())

    sp.write(library=["Documents", "Contracts"], max_delete_fraction=0.5)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 1, m.errors
    assert sp.doc(board_item).deleted_at is not None
    before = len(sp.fake.records)
    assert sp.run().counters.deleted == 0  # retired: left alone
    assert delta_path(drives[2]) not in {r.path for r in graph_since(sp, before)}

    sp.write(library=["Documents", "Contracts", "Board Papers"], max_delete_fraction=0.5)
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.doc(board_item).deleted_at is None and sp.downloads()[downloaded:] == []  # restored from the store


def test_dropping_most_libraries_at_once_is_refused_by_the_delete_limit(sp):
    drives, ids = three_libraries(sp)
    sp.write(library=["Documents", "Contracts", "Board Papers"])
    assert sp.run().status == "succeeded"
    sp.write(library="Contracts")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "delete_limit"
    assert "would delete 3 of 4 documents" in m.errors[0].message
    assert all(sp.doc(i).deleted_at is None for i in ids)


def test_a_library_gone_does_not_hold_back_the_others(sp):
    drives, ids = three_libraries(sp)
    sp.write(library=["Documents", "Contracts", "Board Papers"])
    assert sp.run().status == "succeeded"
    links = [sp.meta("delta_link", d) for d in drives]
    sp.site.drives.remove(drives[1])  # deleted: its drive answers 404
    added = sp.drive.add("new.txt", b"new")

    m = sp.run()

    assert m.status == "partial" and m.counters.ingested == 1 and sp.doc(added) is not None
    [error] = m.errors
    assert error.code == "not_found" and "'Contracts'" in error.message
    assert sp.meta("delta_link", drives[0]) != links[0] and sp.meta("delta_link", drives[1]) == links[1]
