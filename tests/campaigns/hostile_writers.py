"""Hostile-writers campaign: someone who can write into a drop folder tries to turn the
running daemon against files outside it, while an honest writer keeps dropping files.

    python -m tests.campaigns.hostile_writers --seconds 600     # the full form

The attacker, at random moments and intervals (issue 14):
- drops a file in a new folder, then swaps the folder for a symlink to a victim folder
  outside the drop folder, or to the state directory, with the file named like its
  database (`documents.sqlite`): before the read, between read and move, or later;
- renames new content over a file the daemon may be reading (as rsync does);
- hard-links a victim file into the folder, and drops symlinks to victim files;
- leaves an old empty folder and swaps its parent for a symlink to a victim folder that
  holds an old empty folder of the same name (pruning must not reach it);
- moves in trees nested deeper than 64 folders and paths longer than PATH_MAX.

An escape is any of: a victim file changed, moved or deleted (the victim folder is
compared before and after, names, sizes and mtimes); a victim's content in the store or
under processed/ or failed/; the state database moved, replaced or unreadable; the victim's
empty folder pruned. The honest writer's files must all be stored with their content
(the last version of each replaced one). The short form runs in `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tests.campaigns.hostile import Snapshot
from tests.support.helpers import drop_file, make_chain, wait_for, write_config
from tests.support.procs import Daemon

VICTIM = b"victim file: never to be read, moved or deleted by ingestd\n"


class Honest(threading.Thread):
    """Drops files, some in place, some by rename; keeps replacing a few by rename-over."""

    def __init__(self, inbox: Path, rng: random.Random, rate: float = 40.0):
        super().__init__(daemon=True)
        self.inbox, self.rng, self.rate = inbox, rng, rate
        self.expected: dict[str, bytes] = {}  # origin URI → the content that must be stored last
        self.rename_overs = 0
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        (self.inbox / "w").mkdir(exist_ok=True)
        while not self.halt.is_set():
            if n % 4 == 3:  # rsync: a new version renamed over a name the daemon may be reading
                path = self.inbox / "w" / f"report-{self.rng.randrange(5)}.txt"
                self.rename_overs += path.exists()
                self._drop(path, f"report version {n}\n".encode() * self.rng.randint(1, 2000), rename=True)
            else:
                path = self.inbox / "w" / f"f{n:06d}.bin"
                self._drop(path, self.rng.randbytes(self.rng.randint(1, 32 * 1024)), rename=n % 2 == 0)
            n += 1
            self.halt.wait(self.rng.expovariate(self.rate))

    def _drop(self, path: Path, data: bytes, rename: bool) -> None:
        drop_file(path, data, rename=rename)
        self.expected[path.as_uri()] = data


class Attacker(threading.Thread):
    def __init__(self, inbox: Path, victim: Path, state: Path, rng: random.Random, settle: float):
        super().__init__(daemon=True)
        self.inbox, self.victim, self.state, self.rng, self.settle = inbox, victim, state, rng, settle
        self.tried: Counter = Counter()
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        attacks = [self.swap_to_victim, self.swap_to_victim, self.swap_to_state, self.hard_link, self.symlink,
                   self.prune_swap, self.deep_tree, self.long_path]
        weights = [6, 6, 4, 2, 2, 1, 0.3, 0.3]
        n = 0
        while not self.halt.is_set():
            attack = self.rng.choices(attacks, weights)[0]
            try:
                attack(n)
                self.tried[attack.__name__] += 1
            except OSError as exc:  # the daemon moved something first: that try did not happen
                self.errors.append(f"{attack.__name__}: {exc}")
            n += 1
            self.halt.wait(self.rng.uniform(0.0, 0.05))

    def _later(self) -> float:
        """When to swap: before the file settles, around the read, or well after."""
        return self.rng.choice([0.0, self.rng.uniform(0, self.settle), self.rng.uniform(self.settle, 3 * self.settle)])

    def _swap(self, n: int, name: str, target: Path) -> None:
        folder = self.inbox / f"s{n}"
        folder.mkdir()
        (folder / name).write_bytes(f"bait {n}\n".encode())
        self.halt.wait(self._later())
        os.rename(folder, self.inbox / f".gone-{n}")  # ignored from now on: a name starting with "."
        folder.symlink_to(target)

    def swap_to_victim(self, n: int) -> None:
        self._swap(n, "victim.txt", self.victim)

    def swap_to_state(self, n: int) -> None:
        self._swap(n, "documents.sqlite", self.state)

    def hard_link(self, n: int) -> None:
        os.link(self.victim / "victim.txt", self.inbox / f"hl{n}.txt")

    def symlink(self, n: int) -> None:
        (self.inbox / f"sl{n}.txt").symlink_to(self.victim / "victim.txt")

    def prune_swap(self, n: int) -> None:
        folder = self.inbox / f"p{n}"
        (folder / "e").mkdir(parents=True)
        os.utime(folder / "e", (0, 0))  # empty since long ago: due for pruning
        self.halt.wait(self._later())
        os.rename(folder, self.inbox / f".gone-p{n}")
        folder.symlink_to(self.victim)  # the victim has an old empty folder "e" too

    def deep_tree(self, n: int) -> None:
        make_chain(self.inbox.parent / "staging", [f"deep{n}", *[f"d{i}" for i in range(69)], "deep.txt"], b"bait\n")
        os.rename(self.inbox.parent / "staging" / f"deep{n}", self.inbox / f"deep{n}")

    def long_path(self, n: int) -> None:
        make_chain(self.inbox.parent / "staging", [f"long{n}", *["x" * 250] * 17, "long.txt"], b"bait\n")
        os.rename(self.inbox.parent / "staging" / f"long{n}", self.inbox / f"long{n}")


def run(seconds: float, seed: int, workdir: Path, after: str = "move") -> dict:
    rng = random.Random(seed)
    inbox, state, victim = workdir / "inbox", workdir / "state", workdir / "victim"
    inbox.mkdir(parents=True)
    victim.mkdir()
    (victim / "victim.txt").write_bytes(VICTIM)
    (victim / "e").mkdir()
    os.utime(victim / "e", (0, 0))
    settle = 0.2
    config = write_config(
        workdir / "ingestd.toml",
        daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10},
        http={"listen": "127.0.0.1:0"},
        sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": settle, "batch_max": 50,
                  "rescan_seconds": 2, "after": after}],
    )
    daemon = Daemon(config, state, workdir)
    started = time.monotonic()
    try:
        daemon.start()
        database = _inode(state / "documents.sqlite")
        before = Snapshot(victim, skip=victim / "absent")
        honest = Honest(inbox, random.Random(seed + 1))
        attacker = Attacker(inbox, victim, state, random.Random(seed + 2), settle)
        honest.start()
        attacker.start()
        time.sleep(seconds)  # the campaign's length is the experiment, not a wait
        for thread in (honest, attacker):
            thread.halt.set()
            thread.join()
        _disarm(inbox)
        expected = dict(honest.expected)
        try:
            wait_for(lambda: daemon.idle() and not _missing(daemon, expected), timeout=120,
                     message="every honest file stored")
        except AssertionError:
            pass  # reported as lost below
        exit_code = daemon.stop()
        report = _verify(daemon, state, victim, before, database, expected)
        report["exit_code"] = exit_code
    finally:
        daemon.close()
    swaps = sum(attacker.tried[k] for k in ("swap_to_victim", "swap_to_state", "prune_swap"))
    report.update(seed=seed, after=after, seconds=round(time.monotonic() - started, 1), swaps_attempted=swaps,
                  rename_overs=honest.rename_overs, attacks=dict(attacker.tried),
                  attacks_overtaken=len(attacker.errors), honest_files=len(expected), jobs=len(daemon.manifests()))
    return report


def _disarm(inbox: Path) -> None:
    """The attacker's symlinks out, so the folder can drain (what was swapped in stays)."""
    for entry in inbox.iterdir():
        if entry.is_symlink():
            entry.unlink()


def _missing(daemon: Daemon, expected: dict[str, bytes]) -> list[str]:
    """Honest files not stored with their (last) content."""
    try:
        docs = daemon.documents()
    except sqlite3.Error:  # the database itself was taken away
        return list(expected)
    return [o for o, d in expected.items() if o not in docs or docs[o][-1][0] != hashlib.sha256(d).hexdigest()]


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _verify(daemon: Daemon, state: Path, victim: Path, before: Snapshot, database, expected) -> dict:
    escapes: list[str] = [f"victim changed: {c}" for c in before.changes()]
    if not (victim / "e").is_dir():
        escapes.append("victim's empty folder pruned")
    victim_sha = hashlib.sha256(VICTIM).hexdigest()
    if any(victim_sha == v[0] for versions in daemon.documents().values() for v in versions):
        escapes.append("victim content in the store")
    for area in ("processed", "failed"):
        if not (state / area).is_dir():
            continue
        for top, _, files, fd in os.fwalk(state / area):
            for name in files:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == database or st.st_size == len(VICTIM) and _read(name, fd) == VICTIM:
                    escapes.append(f"victim or database under {area}/: {os.path.join(top, name)}")
    if not (state / "documents.sqlite").exists() or _inode(state / "documents.sqlite") != database:
        escapes.append("documents.sqlite moved or replaced")
    elif not _intact(state / "documents.sqlite"):
        escapes.append("documents.sqlite corrupt")
    refused = Counter(e["code"] for m in daemon.manifests() for e in m["errors"])
    lost = _missing(daemon, expected)
    return {"escapes": len(escapes), "escape_list": escapes[:10], "lost": len(lost), "lost_sample": lost[:3],
            "refused": dict(refused)}


def _intact(path: Path) -> bool:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def _read(name: str, dir_fd: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--after", choices=["move", "delete", "keep"], default="move")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingestd-hostile-writers-") as tmp:
        report = run(args.seconds, args.seed, Path(tmp), args.after)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
