"""The finished-jobs file: a start indexes finished jobs from it instead of reading and
validating every manifest (12.5 s to READY on 100,000 jobs, issue 20), while the manifests
stay the truth: a crash at any instant, a torn line, a lost or foreign file, a manifest
replaced after its line was written all end in the index the manifests alone would give."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ingestd._lib.atomic import write_json
from ingestd.jobs.finished import NAME, FinishedFile
from ingestd.jobs.jobstore import JobStore


def made(state: Path, count: int = 6) -> list:
    """Finished jobs of two sources (a failed one among them), one running, one queued."""
    jobs = JobStore(state)
    out = []
    for i in range(count):
        m = jobs.transition(jobs.create("a" if i % 2 else "b", "local", "cli"), "running")
        out.append(jobs.transition(m, "failed" if i == 3 else "succeeded"))
    jobs.transition(jobs.create("a", "local", "cli"), "running")
    jobs.create("b", "local", "cli")
    return out


def listed(state: Path, **filters) -> list[tuple[str, str]]:
    jobs = JobStore(state)
    jobs.load_all()
    return [(m.job_id, m.status) for m in jobs.list(limit=500, **filters)]


def read(state: Path) -> tuple[dict, int]:
    """The file's entries by job id (a later line wins), and how many lines did not count."""
    entries, bad = {}, 0
    for entry in FinishedFile(state / "jobs").entries():
        if entry is None:
            bad += 1
        else:
            entries[entry.job_id] = entry
    return entries, bad


def lines(state: Path) -> dict:
    entries, bad = read(state)
    assert bad == 0
    return entries


def test_finished_jobs_are_indexed_from_their_lines_not_their_manifests(tmp_path):
    done = made(tmp_path)
    assert set(lines(tmp_path)) == {m.job_id for m in done}
    # overwritten in place (same inode): a start that read this manifest would drop the job
    with open(tmp_path / "jobs" / f"{done[0].job_id}.json", "r+b") as f:
        f.write(b"not json at all")
    jobs = JobStore(tmp_path)
    assert jobs.load_all() == 8
    assert jobs.unreadable == []
    assert jobs.memory()["live"] == 2


def test_a_start_lists_what_the_manifests_say(tmp_path):
    done = made(tmp_path)
    by_manifests = listed(tmp_path)
    (tmp_path / "jobs" / NAME).unlink()
    assert listed(tmp_path) == by_manifests  # rebuilt from every manifest
    assert set(lines(tmp_path)) == {m.job_id for m in done}  # and written for the next start
    assert listed(tmp_path) == by_manifests
    assert [m for m, _ in listed(tmp_path, status="failed")] == [done[3].job_id]
    last = JobStore(tmp_path)
    last.load_all()
    assert {m.job_id for m in last.last_succeeded()} == {done[-1].job_id, done[-2].job_id}


def test_a_manifest_replaced_after_its_line_wins(tmp_path):
    done = made(tmp_path)
    path = tmp_path / "jobs" / f"{done[1].job_id}.json"
    record = done[1].to_json() | {"status": "partial"}
    write_json(path, record)  # a new file renamed over the old one: another inode
    assert (done[1].job_id, "partial") in listed(tmp_path, status="partial")
    assert lines(tmp_path)[done[1].job_id].status == "partial"


CRASH = """
import os, signal, sys
from pathlib import Path
from ingestd.jobs import finished
from ingestd.jobs.jobstore import JobStore

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # after the manifest's rename, before its line

jobs = JobStore(Path(sys.argv[1]))
m = jobs.transition(jobs.create("a", "local", "cli"), "running")
if sys.argv[2] == "torn":  # the crash tore the line: half of it reached the file
    real = finished.line
    def killed(file, entry):
        with open(file.path, "ab") as f:
            f.write(real(entry)[:20])
        os.kill(os.getpid(), signal.SIGKILL)
finished.FinishedFile.append = killed
jobs.transition(m, "succeeded")
"""


def crash_finishing_a_job(state: Path, how: str) -> str:
    before = set(os.listdir(state / "jobs")) if (state / "jobs").exists() else set()
    out = subprocess.run([sys.executable, "-c", CRASH, str(state), how], capture_output=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    (job_id,) = {n[:-5] for n in set(os.listdir(state / "jobs")) - before if n.endswith(".json")}
    return job_id


def test_a_crash_between_the_manifest_and_its_line_loses_nothing(tmp_path):
    done = made(tmp_path)
    job_id = crash_finishing_a_job(tmp_path, "kill")
    assert job_id not in lines(tmp_path)
    assert (job_id, "succeeded") in listed(tmp_path, status="succeeded")
    assert job_id in lines(tmp_path)  # mended: the next start reads its line
    jobs = JobStore(tmp_path)
    jobs.load_all()
    assert {m.job_id for m in jobs.last_succeeded()} == {job_id, done[-2].job_id}  # a's and b's


def test_a_line_torn_by_a_crash_is_mended_and_later_lines_stay_whole(tmp_path):
    made(tmp_path)
    job_id = crash_finishing_a_job(tmp_path, "torn")
    assert read(tmp_path)[1] == 1
    assert (job_id, "succeeded") in listed(tmp_path, status="succeeded")
    assert job_id in lines(tmp_path)  # rewritten whole, without the torn line
    # a crash tears the last line while another process goes on appending after it
    with open(tmp_path / "jobs" / NAME, "ab") as f:
        f.write(b"f\t2026")
    jobs = JobStore(tmp_path)
    later = jobs.transition(jobs.transition(jobs.create("a", "local", "cli"), "running"), "succeeded")
    entries, bad = read(tmp_path)
    assert later.job_id in entries and bad == 1


def test_a_foreign_file_is_ignored_and_replaced(tmp_path):
    made(tmp_path)
    by_manifests = listed(tmp_path)
    (tmp_path / "jobs" / NAME).write_bytes(b"something else\nf\tx\tsucceeded\n")
    assert listed(tmp_path) == by_manifests
    assert len(lines(tmp_path)) == 6


def test_expired_jobs_leave_the_file_at_a_later_start(tmp_path):
    jobs = JobStore(tmp_path)
    for _ in range(150):
        jobs.transition(jobs.transition(jobs.create("a", "local", "cli"), "running"), "succeeded")
    assert jobs.expire(older_than=-60) == 149  # the source's last success stays
    assert len(lines(tmp_path)) == 150
    assert len(listed(tmp_path)) == 1
    assert len(lines(tmp_path)) == 1


def test_a_finished_manifest_without_its_finish_time_is_indexed_and_not_a_last_success(tmp_path):
    done = made(tmp_path)
    odd = done[-1].to_json() | {"job_id": "20270101T000000000000Z-0000beef", "finished_at": None,
                                 "items_file": "20270101T000000000000Z-0000beef.items.jsonl"}
    write_json(tmp_path / "jobs" / f"{odd['job_id']}.json", odd)
    jobs = JobStore(tmp_path)
    assert jobs.load_all() == 9
    assert odd["job_id"] not in {m.job_id for m in jobs.last_succeeded()}
