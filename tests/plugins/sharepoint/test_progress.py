"""What a SharePoint job tells a person watching it (docs/progress.md): `listing` while it
reads the delta and plans, then how many items and bytes to expect and `downloading`, the
bytes counted as they arrive (core does not count a file the connector hands over owned)."""

import threading

from ingestd._lib import logs
from ingestd.plugin import JobContext, Progress


def test_a_sync_reports_listing_then_the_items_to_expect(sp):
    files = {"Welcome.docx": b"PK\x03\x04 word " * 40, "Contracts/acme.pdf": b"%PDF-1.4\n acme " * 30,
             "Contracts/notes.txt": b"remember the milk\n", "Budget/forecast.csv": b"month,amount\njan,10\n"}
    for path, data in files.items():
        sp.drive.add(path, data)
    progress = Progress()
    connector = sp.app().connector("docs")
    ctx = JobContext(job_id="20261206T120000000000Z-0000abcd", source=connector.source, state_dir=sp.state,
                     stop=threading.Event(), log=logs.get(), progress=progress)
    try:
        seen = [progress.snapshot() for _ in connector.stage(ctx)]
    finally:
        connector.finish(ctx, [], "failed")  # nothing recorded: the run lets its state go
    assert len(seen) == len(files)
    total = sum(len(data) for data in files.values())
    assert all(s["phase"] == "downloading" and s["items_total"] == len(files) for s in seen)
    assert all(s["bytes_total"] == total for s in seen)
    moved = [s["bytes_done"] for s in seen]  # each staged file's bytes are counted by the time it is handed over
    assert moved == sorted(moved) and moved[-1] == total and moved[0] > 0
