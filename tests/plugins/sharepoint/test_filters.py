"""include/exclude on SharePoint ignore case, as SharePoint names do (issue 24, item 2),
and the files they leave out are counted, not dropped without a word."""


def test_globs_ignore_case_and_count_what_they_leave_out(sp):
    sp.write(include=["**/*.txt", "**/*.pdf"], exclude=["Archive/**"])
    taken = {p: sp.drive.add(p, f"content of {p}".encode()) for p in
             ("Memo.TXT", "notes/todo.txt", "Scans/Scan.PDF", "Scans/other.pdf")}
    for path in ("archive/old.txt", "ARCHIVE/deep/older.PDF", "Budget/forecast.csv", "readme.md"):
        sp.drive.add(path, b"left out")

    m = sp.run()

    assert m.status == "succeeded" and m.counters.ingested == len(taken)
    assert all(sp.doc(item_id).metadata["path"] == path for path, item_id in taken.items())
    assert m.counters.filtered == 4

    sp.drive.add("Scans/late.Pdf", b"%PDF late")
    sp.drive.add("archive/late.txt", b"left out")
    m = sp.run()
    assert (m.counters.ingested, m.counters.filtered) == (1, 1)


def test_a_filtered_source_re_reads_its_library_once_after_the_dialect_change():
    """Files the old case-sensitive rules missed are in no delta until they change: a source
    with filters starts its delta afresh once; one without filters keeps its delta link."""
    from ingestd_sharepoint.options import SharePointOptions

    base = {"site_url": "https://contoso.sharepoint.com/sites/legal", "credentials": "sp"}
    assert "globs" not in SharePointOptions(**base).scope_key()
    assert SharePointOptions(**base, include=["**/*.txt"]).scope_key()["globs"] == "gitignore, ignore case"
    assert "globs" in SharePointOptions(**base, exclude=["Archive/**"]).scope_key()
