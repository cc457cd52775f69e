"""Churn campaign for the change feed (issue 17, "Done means"): documents created, changed
and deleted over time in a drop folder and an S3 bucket (moto's server), the daemon
SIGKILLed at random moments and restarted, and a consumer following `GET /changes` all
along. Afterwards:

- the live follower never saw a cursor at or below one it had already seen, across every
  kill and restart (gapless), and never saw one twice;
- a consumer replaying `/changes` from the first cursor ends with exactly the live set of
  `GET /documents` (same documents, same sha256: 0 missing, 0 extra, deletions
  included), which is also the ground truth (the last bytes written for every dropped
  path, every object still in the bucket);
- so did the live follower.

    python -m tests.campaigns.churn --documents 10000 --kills 5     # the full form

The short form runs inside `make test` (tests/campaigns/test_campaigns.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.campaigns.crash import _aws_isolation, _moto, campaign_config
from tests.support.helpers import wait_for
from tests.support.procs import Daemon

CHANGED = 0.2  # of the documents, the share written a second time with other bytes
DELETED = 0.15  # of the S3 objects, the share deleted again


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Workload(threading.Thread):
    """Creates, changes and deletes documents at a steady pace until its plan is done.

    The plan is fixed by the seed: each step creates a document, rewrites one created
    earlier, or (S3) deletes one. `expected` is the ground truth as it stands: origin URI
    → sha256 of the bytes the origin holds now.

    A dropped file is rewritten only once its earlier bytes have left the inbox, unless
    `in_place`: a file renamed over while its earlier version is being ingested is moved
    out un-ingested by the drop folder on main (a lost update the drop-folder work, which
    moves only the inode it read, fixes); the campaign found it."""

    def __init__(self, inbox: Path, moto, documents: int, seconds: float, rng: random.Random,
                 in_place: bool = False):
        super().__init__(daemon=True)
        self.inbox, self.moto, self.rng, self.in_place = inbox, moto, rng, in_place
        s3_share = 0.4 if moto is not None else 0.0
        self.plan = self._plan(documents, s3_share)
        self.pause = seconds / max(1, len(self.plan))
        self.expected: dict[str, str] = {}
        self.counts = {"created": 0, "changed": 0, "deleted": 0}
        self.done = threading.Event()

    def _plan(self, documents: int, s3_share: float) -> list[tuple[str, int]]:
        """Creations spread evenly over the run; each change and deletion at a random
        moment after its document's creation (a change after a deletion brings an S3
        object back: a restore)."""
        self.kinds = ["s3" if self.rng.random() < s3_share else "drop" for _ in range(documents)]
        events = [(i / documents, 0, "create", i) for i in range(documents)]
        chosen = list(range(documents))
        self.rng.shuffle(chosen)
        for i in chosen[: int(documents * CHANGED)]:
            events.append((self.rng.uniform(i / documents, 1.0), 1, "change", i))
        s3 = [i for i in chosen if self.kinds[i] == "s3"]
        for i in s3[len(s3) - int(len(s3) * DELETED):]:
            events.append((self.rng.uniform(i / documents, 1.0), 2, "delete", i))
        return [(action, i) for _, _, action, i in sorted(events)]

    def run(self) -> None:
        deferred = []
        for action, i in self.plan:
            if not self._do(action, i):
                deferred.append((action, i))
            time.sleep(self.pause)  # the workload's pace, not a wait for anything
        while deferred:  # rewrites of files still waiting in the inbox, once they have left it
            deferred = [(action, i) for action, i in deferred if not self._do(action, i)]
            time.sleep(0.05)
        self.done.set()

    def _do(self, action: str, i: int) -> bool:
        """Take one step of the plan; False to try it again later."""
        data = self.rng.randbytes(self.rng.randint(1, 8 * 1024))
        if self.kinds[i] == "drop":
            path = self.inbox / f"d{i % 7}" / f"doc-{i:06d}.bin"
            if path.exists() and not self.in_place:
                return False  # see `in_place` in run(): the earlier bytes have not been taken yet
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            tmp.rename(path)  # a careful writer: the watcher never sees half a file
            self.expected[path.as_uri()] = sha(data)
        else:
            key = f"churn/{i % 5}/obj-{i:06d}.dat"
            if action == "delete":
                self.moto.s3.delete_object(Bucket="docs", Key=key)
                self.expected.pop(f"s3://docs/{key}", None)
            else:
                self.moto.put(key, data)
                self.expected[f"s3://docs/{key}"] = sha(data)
        self.counts["created" if action == "create" else action + "d"] += 1
        return True


class Follower(threading.Thread):
    """A consumer following the feed through every kill and restart: long-polls from its
    last cursor, reconnecting (to the daemon's new port) when the daemon is down."""

    def __init__(self, state: Path):
        super().__init__(daemon=True)
        self.state = state
        self.after: str | None = None
        self.cursors: list[str] = []
        self.late: list[tuple[str, str]] = []  # (last seen, a cursor at or below it seen after it)
        self.live: dict[str, str] = {}  # doc_id → sha256, replayed
        self.halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                page = self._get(f"/changes?limit=500&wait=1" + (f"&after={self.after}" if self.after else ""))
            except (OSError, ValueError, urllib.error.URLError):
                self.errors += 1
                self.halt.wait(0.05)  # the daemon is down or restarting: ask again shortly
                continue
            for change in page["changes"]:
                if self.cursors and change["cursor"] <= self.cursors[-1]:
                    self.late.append((self.cursors[-1], change["cursor"]))
                self.cursors.append(change["cursor"])
                apply(self.live, change)
            self.after = page["next_after"]

    def _get(self, path: str) -> dict:
        info = json.loads((self.state / "daemon.json").read_text())
        with urllib.request.urlopen(f"http://{info['http']}{path}", timeout=30) as reply:
            return json.loads(reply.read())


def apply(live: dict[str, str], change: dict) -> None:
    if change["type"] == "deleted":
        live.pop(change["doc_id"], None)
    elif change["type"] in ("stored", "updated", "restored"):
        live[change["doc_id"]] = change["sha256"]


def replay(daemon: Daemon) -> tuple[dict[str, str], int]:
    """A consumer from the first cursor: the live set the feed leads to, and its length."""
    live: dict[str, str] = {}
    after, total = None, 0
    while True:
        status, page = daemon.get("/changes?limit=1000" + (f"&after={after}" if after else ""))
        assert status == 200, page
        for change in page["changes"]:
            apply(live, change)
        total += len(page["changes"])
        if not page["changes"]:
            return live, total
        after = page["next_after"]


def listing(daemon: Daemon) -> dict[str, tuple[str, str]]:
    """doc_id → (origin_uri, sha256) of every live document, from GET /documents."""
    out, path = {}, "/documents?limit=500"
    while path:
        status, page = daemon.get(path)
        assert status == 200, page
        out.update((d["doc_id"], (d["origin_uri"], d["sha256"])) for d in page["documents"])
        path = page["links"]["next"]
    return out


def run(documents: int, kills: int, seed: int, workdir: Path, seconds: float | None = None,
        in_place: bool = False) -> dict:
    rng = random.Random(seed)
    inbox, state = workdir / "inbox", workdir / "state"
    inbox.mkdir(parents=True)
    moto = _moto()
    config = campaign_config(workdir, moto, "churn", max_delete_fraction=1.0)
    seconds = seconds if seconds is not None else max(10.0, documents / 60)
    workload = Workload(inbox, moto, documents, seconds, rng, in_place=in_place)
    daemon = Daemon(config, state, workdir, env=_aws_isolation(workdir))
    follower = Follower(state)
    started = time.monotonic()
    kill_at = sorted(rng.uniform(0.1, 0.9) * seconds for _ in range(kills))
    try:
        daemon.start()
        follower.start()
        workload.start()
        for moment in kill_at:
            time.sleep(max(0.0, moment - (time.monotonic() - started)))  # the kill point is the experiment
            daemon.kill()
            daemon.start()
        workload.join()
        expected = dict(workload.expected)
        _converge(daemon, expected, workdir, timeout=max(180.0, seconds))
        wait_for(lambda: follower.after == _head(daemon), timeout=60, message="the follower to catch up")
        follower.halt.set()
        follower.join(60)
        listed = listing(daemon)
        replayed, changes = replay(daemon)
        assert daemon.stop() == 0
    finally:
        follower.halt.set()
        daemon.close()
        if moto is not None:
            moto.stop()
    report = verify(listed, replayed, follower, expected)
    report.update(documents=documents, kills=kills, seed=seed, changes=changes, seconds=round(time.monotonic() - started, 1),
                  follower_reconnects=follower.errors, **workload.counts)
    return report


def _converge(daemon: Daemon, expected: dict[str, str], workdir: Path, timeout: float) -> None:
    """Wait until the store holds what the origins hold (the feed is written with it);
    on timeout, say what differs and where the files are."""
    deadline = time.monotonic() + timeout
    while True:
        got = {origin: digest for origin, digest in listing(daemon).values()}
        if got == expected:
            return
        if time.monotonic() > deadline:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            other = sorted(o for o in set(got) & set(expected) if got[o] != expected[o])
            left = [str(p.relative_to(workdir)) for p in workdir.glob("inbox/**/*") if p.is_file()]
            failed = [str(p.relative_to(workdir)) for p in workdir.glob("state/failed/**/*") if p.is_file()]
            raise AssertionError(f"not converged after {timeout:.0f}s: {len(missing)} missing {missing[:3]}, "
                                 f"{len(extra)} extra {extra[:3]}, {len(other)} with other content {other[:3]}; "
                                 f"left in the inbox: {left[:5]}; failed: {failed[:5]}")
        time.sleep(0.5)  # polling the store for convergence (a campaign, not a unit test)


def _head(daemon: Daemon) -> str:
    status, page = daemon.get("/documents?limit=1")
    return page["next_after"]


def verify(listed: dict, replayed: dict[str, str], follower: Follower, expected: dict[str, str]) -> dict:
    live = {doc_id: digest for doc_id, (_, digest) in listed.items()}
    missing = sorted(set(live) - set(replayed))
    extra = sorted(set(replayed) - set(live))
    wrong = sorted(d for d in set(live) & set(replayed) if live[d] != replayed[d])
    assert not (missing or extra or wrong), (f"replay vs GET /documents: {len(missing)} missing, {len(extra)} extra, "
                                             f"{len(wrong)} with other content, e.g. {(missing + extra + wrong)[:3]}")
    assert follower.late == [], f"the follower saw cursors go back: {follower.late[:5]}"
    assert len(set(follower.cursors)) == len(follower.cursors), "the follower saw a cursor twice"
    assert follower.live == live, "the live follower's state differs from GET /documents"
    assert {origin: digest for origin, digest in listed.values()} == expected
    return {"live_documents": len(live), "missing": 0, "extra": 0, "follower_changes": len(follower.cursors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seconds", type=float, help="how long the workload runs (default: documents / 60)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--in-place", action="store_true",
                        help="rewrite dropped files even while their earlier bytes wait in the inbox")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-churn-") as tmp:
        print(json.dumps(run(args.documents, args.kills, args.seed, Path(tmp), args.seconds, args.in_place),
                         indent=2))


if __name__ == "__main__":
    main()
