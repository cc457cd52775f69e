"""A migration killed at any instant is finished by the next start, and nothing uses the
state in between; two processes never migrate at once.

The migration runs in a child (`tests/upgrade/migrating.py`: this checkout's CLI plus a
test step after core's last that backfills a table in one transaction) which stops at
points the test names and waits there for the test: to be SIGKILLed, or to go on. No
sleeps. Core's own steps are applied first, so the test step is the one killed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingestd.state.steps import CORE, latest
from tests.support.helpers import ROOT, run_cli, wait_for

from . import archive
from .installation import FIXTURES
from .migrating import TABLE

LAST = latest(CORE)  # core's last step: the state is migrated up to it before each test
TEST = LAST + 1  # the test step's version
BEFORE = (LAST, list(range(2, LAST + 1)))
AFTER = (TEST, list(range(2, TEST + 1)))


class Child:
    """`python -m tests.upgrade.migrating` on the installation at `root`."""

    def __init__(self, root: Path, *args: str, pauses: tuple[str, ...] = ()):
        report_r, report_w = os.pipe()
        resume_r, resume_w = os.pipe()
        self.report, self.resume_fd = report_r, resume_w
        self.stderr = root.parent / f"child-{time.monotonic_ns()}.log"
        argv = [sys.executable, "-m", "tests.upgrade.migrating", str(report_w), str(resume_r), ",".join(pauses),
                "--", *args, "--config", str(root / "ingestd.toml")]
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, pass_fds=(report_w, resume_r), stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        os.close(report_w)
        os.close(resume_r)

    def reached(self, timeout: float = 60.0) -> str:
        """The pause point the child stopped at (waits for it)."""
        ready, _, _ = select.select([self.report], [], [], timeout)
        assert ready, f"the child reached no pause point in {timeout}s; stderr:\n{self.log()}"
        line = os.read(self.report, 100).decode()
        assert line.endswith("\n"), (line, self.log())
        return line.strip()

    def go_on(self) -> None:
        os.write(self.resume_fd, b"x")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for fd in (self.report, self.resume_fd):
            os.close(fd)


@pytest.fixture
def inst(tmp_path):
    root = archive.unpack(FIXTURES / "v0.1.0.tar.gz", tmp_path / "installation")
    migrated = run_cli("migrate", "--config", root / "ingestd.toml")  # core's steps, unkilled
    assert migrated.returncode == 0, migrated.stderr
    children: list[Child] = []

    def child(*args: str, pauses: tuple[str, ...] = ()) -> Child:
        children.append(Child(root, *args, pauses=pauses))
        return children[-1]

    yield root, child
    for c in children:
        c.close()


def records(state: Path) -> dict[str, list]:
    db = sqlite3.connect(f"file:{state / 'documents.sqlite'}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall()) for t in sorted(tables)}
    finally:
        db.close()


def schema(state: Path) -> tuple[int, list[int]]:
    marker = json.loads((state / "SCHEMA.json").read_text())
    return marker["schema"], [h["version"] for h in marker["history"]]


def test_a_migration_killed_at_each_instant_is_finished_by_the_next_start(inst):
    root, child = inst
    state = root / "state"
    original = records(state)
    # each start is killed one point further on; the table's fate at each kill is known
    for point, table_after in (("begin", None), ("half", None), ("committed", "full")):
        c = child("migrate", pauses=(point,))
        assert c.reached() == point
        c.kill()
        assert schema(state) == BEFORE, f"killed at {point}: step {TEST} recorded, or an earlier one lost"
        now = records(state)
        assert {t: v for t, v in now.items() if t != TABLE} == original, f"killed at {point}: records changed"
        if table_after is None:
            assert not now.get(TABLE), f"killed at {point}: uncommitted rows are visible"
        else:
            assert len(now[TABLE]) == len(original["documents"])
        refused = child("jobs")  # a half-migrated state is never used
        assert refused.finish()[0] == 3, refused.log()
        assert f"pending: {TEST} test-backfill" in refused.log() and "ingestd migrate" in refused.log()

    rc, out = child("migrate").finish()
    assert rc == 0, out
    assert out.startswith(f"state {state}: applied {TEST} test-backfill ("), out
    assert schema(state) == AFTER, "each step recorded once"
    final = records(state)
    assert sorted(final[TABLE]) == sorted((d[0], d[3]) for d in original["documents"]), "the redo doubled or lost rows"
    assert {t: v for t, v in final.items() if t != TABLE} == original
    reader = child("jobs", "--json")
    rc, out = reader.finish()
    assert rc == 0 and json.loads(out), reader.log()


def test_two_processes_never_migrate_at_once_and_readers_wait(inst):
    """While one process is inside a step, a second `migrate` and a reader wait for it;
    then the second finds nothing left to do and the reader reads the migrated state."""
    root, child = inst
    state = root / "state"
    first = child("migrate", pauses=("half",))
    assert first.reached() == "half"
    second, reader = child("migrate"), child("jobs", "--json")
    for waiting in (second, reader):
        wait_for(lambda w=waiting: "waiting for another ingestd process to finish migrating" in w.log(),
                 timeout=60, interval=0.05, message="the second process to wait for the lock")
    assert second.proc.poll() is None and reader.proc.poll() is None
    first.go_on()
    assert first.finish()[0] == 0
    rc, out = second.finish()
    assert (rc, out) == (0, "up to date: nothing to migrate\n"), second.log()
    rc, out = reader.finish()
    assert rc == 0 and json.loads(out), reader.log()
    assert schema(state) == AFTER
    assert len(records(state)[TABLE]) == len(records(state)["documents"])
