"""`ingestd` with one more core migration step, registered here for the tests: the child
process that the crash-mid-migration tests kill and restart.

    python -m tests.upgrade.migrating REPORT_FD RESUME_FD PAUSES -- ingestd-args...

The test step (`test-backfill`, after core's last step) gives every document a row in a new table, in one transaction,
as a real backfill would (the change feed's replay is one). At each point named in
PAUSES (comma-separated: `begin`, `half`, `committed`) it writes the point's name to
REPORT_FD and waits for a byte on RESUME_FD, so the test decides when it goes on, or
kills it there: before any write, halfway through the transaction, after the commit but
before the runner has recorded the step.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from ingestd import cli
from ingestd.plugin.migration import Step, StepContext
from ingestd.state import steps

POINTS = ("begin", "half", "committed")
TABLE = "test_backfill"


class Pauses:
    def __init__(self, report_fd: int, resume_fd: int, points: set[str]):
        self.report_fd, self.resume_fd, self.points = report_fd, resume_fd, points

    def __call__(self, point: str) -> None:
        if point in self.points:
            os.write(self.report_fd, f"{point}\n".encode())
            if not os.read(self.resume_fd, 1):
                raise SystemExit("the test closed the resume pipe")


def backfill(pause):
    def apply(ctx: StepContext) -> None:
        pause("begin")
        db = sqlite3.connect(ctx.root / "documents.sqlite", isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (doc_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
            if db.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is None:  # a redo finds it done
                rows = db.execute("SELECT doc_id, current_seq FROM documents ORDER BY doc_id").fetchall()
                half = len(rows) // 2
                db.executemany(f"INSERT INTO {TABLE} VALUES (?, ?)", rows[:half])
                pause("half")
                db.executemany(f"INSERT INTO {TABLE} VALUES (?, ?)", rows[half:])
            db.execute("COMMIT")
        finally:
            db.close()
        pause("committed")

    return apply


def main(argv: list[str]) -> int:
    report_fd, resume_fd, points, sep, *args = argv
    assert sep == "--", argv
    pause = Pauses(int(report_fd), int(resume_fd), {p for p in points.split(",") if p})
    steps.register(Step(steps.latest(steps.CORE) + 1, "test-backfill", "a row per document in a new table (tests only)",
                        backfill(pause)))
    return cli.main(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
