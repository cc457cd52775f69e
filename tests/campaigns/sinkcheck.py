"""What a webhook receiver must have got from a sink across SIGKILLs: every change at
least once, in cursor order within each run of the daemon, and duplicates only where a
restart sent again what the killed daemon had delivered but not yet recorded."""

from __future__ import annotations

from pathlib import Path

from tests.support.receiver import Receiver


def add_sink(config: Path, receiver: Receiver, name: str = "churn-hook") -> None:
    """Give a campaign's config a webhook sink (appended: the tables are the campaign's)."""
    with open(config, "a") as out:
        out.write(f'[[sinks]]\nname = "{name}"\nkind = "webhook"\nurl = "{receiver.url}"\nbatch_max = 50\n'
                  'retry_max = "1s"\n')


def verify(cursors: list[str], head: int, kills: int) -> dict:
    """`cursors`: what the receiver accepted, in arrival order. Each run of the daemon
    delivers a contiguous, rising run of cursors; a new run may start at or below where
    the last one ended (the batch in flight at a kill, sent again), never above it + 1."""
    numbers = [int(c) for c in cursors]
    assert sorted(set(numbers)) == list(range(1, head + 1)), (
        f"the receiver misses changes: {sorted(set(range(1, head + 1)) - set(numbers))[:5]}")
    runs, duplicates, last = 0, 0, 0
    for n in numbers:
        if n == last + 1:
            last = n
            continue
        assert n <= last, f"a gap: cursor {n} after {last}"
        runs += 1  # a redelivery starts here: only a restart does that
        duplicates += last - n + 1
        last = n
    assert runs <= kills, f"{runs} redeliveries for {kills} kills: a duplicate not caused by a kill"
    return {"sink_changes_received": len(numbers), "sink_duplicates": len(numbers) - head,
            "sink_redeliveries": runs}
