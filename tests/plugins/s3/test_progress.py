"""What an S3 job tells a person watching it (docs/progress.md): `listing` while it pages
through the bucket, then the totals (objects to fetch, their bytes, tombstones) and
`downloading`, and every byte it downloads, as it downloads it."""

from __future__ import annotations

import threading

from ingestd._lib import logs
from ingestd.plugin import JobContext, Progress

from .kit import BUCKET, SOURCE


def test_a_sync_reports_listing_its_totals_and_the_bytes_it_downloads(s3env, moto):
    for name in ("a", "b", "c", "gone"):
        moto.put(f"{name}.txt", name.encode())
    assert s3env.run()["status"] == "succeeded"
    fresh = {f"new/{i}.bin": bytes([i]) * (3000 * (i + 1)) for i in range(5)}
    for key, data in fresh.items():
        moto.put(key, data)
    moto.s3.delete_object(Bucket=BUCKET, Key="gone.txt")

    progress = Progress()
    listed_while = []
    moto.log.hooks.append(lambda req: listed_while.append(progress.snapshot()["phase"]) if req.is_list else None)
    with s3env.app() as application:
        connector = application.connector(SOURCE)
        ctx = JobContext(job_id="20261206T120000000000Z-0000abcd", source=connector.source, state_dir=s3env.state,
                         stop=threading.Event(), log=logs.get(), progress=progress)
        seen = [progress.snapshot() for _ in connector.stage(ctx)]
    size = sum(len(d) for d in fresh.values())
    assert listed_while == ["listing"]
    # known objects: fetches wait for the whole listing (the delete valve), so the totals come first
    assert seen[0]["phase"] == "downloading"
    assert (seen[0]["items_total"], seen[0]["bytes_total"]) == (len(fresh) + 1, size)
    assert len(seen) == len(fresh) + 1 and seen[-1]["bytes_done"] == size
    assert [s["bytes_done"] for s in seen] == sorted(s["bytes_done"] for s in seen)
