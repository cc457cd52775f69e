"""Items that leave the scope and come back (issue 24 item 1): a folder moved out and
back, renamed to an excluded name and back, deleted and restored from the recycle bin.
Their documents are restored from the bytes the store holds, without a download; and a
content change a weak hash misses is caught by the cTag (issue 24 item 3)."""

import hashlib

import pytest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FILES = {f"A/f{i}.txt": f"file {i} in A\n".encode() * 20 for i in range(3)}
FILLER = {f"keep/k{i}.txt": f"filler {i}\n".encode() for i in range(4)}  # keeps 3 deletes under the limit


def library(sp, root: str = "") -> dict[str, str]:
    prefix = f"{root}/" if root else ""
    ids = {path: sp.drive.add(prefix + path, data) for path, data in {**FILES, **FILLER}.items()}
    return {path: ids[path] for path in FILES}


def assert_restored(sp, ids, job):
    for path, item_id in ids.items():
        doc = sp.doc(item_id)
        assert doc.deleted_at is None, path
        assert doc.sha256 == sha(FILES[path]) and doc.job_id == job.job_id


def test_a_folder_moved_out_of_scope_and_back_restores_its_files(sp):
    sp.write(folder="Synced")
    ids = library(sp, "Synced")
    assert sp.run().counters.ingested == 7
    first = len(sp.fake.records)

    sp.drive.move("Synced/A", "Outside")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 3
    assert all(sp.doc(i).deleted_at is not None for i in ids.values())

    sp.drive.move("Outside/A", "Synced")
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == 3 and m.counters.failed == 0
    assert_restored(sp, ids, m)
    assert sp.doc(ids["A/f0.txt"]).metadata["path"] == "Synced/A/f0.txt"
    assert fetched_since(sp, first, ids) == []  # restored from the bytes the store holds


def test_a_folder_renamed_to_an_excluded_name_and_back_restores_its_files(sp):
    sp.write(exclude=["Archive/**"])
    ids = library(sp)
    sp.run()
    before = len(sp.fake.records)

    sp.drive.rename("A", "Archive")
    m = sp.run()
    assert m.counters.deleted == 3 and all(sp.doc(i).deleted_at is not None for i in ids.values())

    sp.drive.rename("Archive", "A")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 3, m.errors
    assert_restored(sp, ids, m)
    assert fetched_since(sp, before, ids) == []


@pytest.mark.parametrize("report_children", [False, True], ids=["folder only", "with its files"])
def test_a_folder_restored_from_the_recycle_bin_restores_its_files(sp, report_children):
    sp.write(folder="Synced")
    ids = library(sp, "Synced")
    sub = sp.drive.add("Synced/A/deeper/sub.txt", b"one level down")
    sp.run()
    folder = sp.drive.folder("Synced/A")
    before = len(sp.fake.records)

    sp.drive.delete("Synced/A")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.deleted == 4

    sp.drive.restore(folder, report_children=report_children)
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == 4 and m.counters.failed == 0
    assert_restored(sp, ids, m)
    assert sp.doc(sub).deleted_at is None and sp.doc(sub).metadata["path"] == "Synced/A/deeper/sub.txt"
    assert fetched_since(sp, before, {**ids, "sub": sub}) == []  # the store still held the bytes


def test_an_edit_that_keeps_size_and_quickxorhash_is_caught_by_the_ctag(sp):
    sp.drive.delta_ctag = True  # as SharePoint's delta has been seen to send it
    records = [bytes([65 + i]) * 79 + b"\n" for i in range(4)]  # four 80-byte records
    v1 = b"".join(records)
    v2 = records[2] + records[1] + records[0] + records[3]  # records 0 and 2 swapped: 160 bytes apart
    item = sp.drive.add("records.dat", v1)
    sp.run()
    sp.drive.edit("records.dat", v2)
    node = sp.drive.nodes[item]
    assert len(v1) == len(v2) and node.quick_xor() == sp.drive.item_json(node)["file"]["hashes"]["quickXorHash"]

    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 1
    assert sp.doc(item).sha256 == sha(v2) and sp.blob(sp.doc(item).sha256) == v2
    assert sp.doc(item).metadata["etag"] == sp.drive.item_json(node)["eTag"]


def fetched_since(sp, start: int, ids) -> list[str]:
    """Ids among `ids` whose bytes were asked for after record `start`."""
    wanted = set(ids.values()) if isinstance(ids, dict) else set(ids)
    guids = {sp.drive.nodes[i].guid: i for i in wanted}
    out = []
    for r in sp.fake.records[start:]:
        if r.path.endswith("/content") and r.path.split("/")[-2] in wanted:
            out.append(r.path.split("/")[-2])
        elif r.kind == "download" and r.query.get("UniqueId", [""])[0] in guids:
            out.append(guids[r.query["UniqueId"][0]])
    return out


def test_a_file_edited_while_out_of_scope_comes_back_with_its_new_content(sp):
    sp.write(folder="Synced")
    ids = library(sp, "Synced")
    sp.run()
    sp.drive.move("Synced/A", "Outside")
    sp.drive.edit("Outside/A/f0.txt", b"edited on the way out")  # in the same run as the move
    assert sp.run().counters.deleted == 3
    sp.drive.edit("Outside/A/f1.txt", b"edited while outside")  # in a run of its own
    assert sp.run().counters.deleted == 0
    before = len(sp.fake.records)

    sp.drive.move("Outside/A", "Synced")
    m = sp.run()
    assert m.status == "succeeded" and m.counters.ingested == 3, m.errors
    assert sp.doc(ids["A/f0.txt"]).sha256 == sha(b"edited on the way out")
    assert sp.doc(ids["A/f1.txt"]).sha256 == sha(b"edited while outside")
    assert sp.doc(ids["A/f2.txt"]).sha256 == sha(FILES["A/f2.txt"])
    assert set(fetched_since(sp, before, ids)) == {ids["A/f0.txt"], ids["A/f1.txt"]}  # f2 from the store
