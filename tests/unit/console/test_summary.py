"""The summary after a job: counters, rate, errors grouped by code, originals, the next command."""

from ingestd.console.summary import summary
from ingestd.errors import Code
from ingestd.jobs.manifest import Counters, JobError, Manifest


def finished(**extra) -> Manifest:
    return Manifest(job_id="20261206T120000000000Z-00000001", source="inbox", kind="local", trigger="cli",
                    status="partial", created_at="2026-12-06T12:00:00.000Z", started_at="2026-12-06T12:00:00.000Z",
                    finished_at="2026-12-06T12:00:04.000Z", items_file="x.items.jsonl",
                    counters=Counters(discovered=9, ingested=4, skipped=1, failed=4, bytes=4 << 20), **extra)


def test_errors_grouped_by_code_first_items_then_how_many_more(tmp_path):
    errors = [JobError(code=Code.PERMISSION, message=f"denied {i}", item=f"file:///in/p{i}") for i in range(5)]
    errors.insert(2, JobError(code=Code.EMPTY, message="zero-byte file", item="file:///in/e"))
    errors.append(JobError(code=Code.AUTH, message="authentication failed"))
    m = finished(errors=errors, errors_dropped=7)
    assert summary(m, tmp_path) == [
        "job 20261206T120000000000Z-00000001  source inbox (local)  partial in 4.0 s",
        "  4 ingested, 0 unchanged, 1 skipped, 4 failed; 4.0 MiB stored at 1.0 MiB/s, 2 items/s",
        "  errors:",
        "    auth: authentication failed",
        "    empty: zero-byte file  [file:///in/e]",
        "    permission (5): denied 0",
        "      file:///in/p0", "      file:///in/p1", "      file:///in/p2",
        "      … and 2 more",
        "    … and 7 more errors the manifest does not list",
        "  all items: ingestd status 20261206T120000000000Z-00000001 --items",
    ]


def test_where_the_originals_went_and_the_config_in_the_next_command(tmp_path):
    m = finished()
    (tmp_path / "processed" / "inbox" / m.job_id).mkdir(parents=True)
    lines = summary(m, tmp_path, config="/etc/x.toml")
    assert lines[-2:] == [f"  originals taken: {tmp_path}/processed/inbox/{m.job_id}",
                          f"  all items: ingestd status {m.job_id} --items --config /etc/x.toml"]
