"""A drop folder nobody who can write into it can turn against ingestd (issue 14).

Each attack runs a real job (App: the local connector, the pipeline, the store) and swaps
things at the worst instant: just before the job reads, or between its read and the
move or delete in `finish` (a subclass runs the swap first, then the real `finish`).
Outside the drop folder sits a victim folder with files ingestd can read, and the state
directory's own database: none of them may be read into the store, moved or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ingestd.app import App, load_config
from ingestd.plugin.manager import Plugins
from ingestd.plugin.kit import Dir, identity
from ingestd_local.connector import LocalConnector
from tests.support.helpers import make_chain, write_config

VICTIM = b"victim: never to be read, moved or deleted by ingestd\n"


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolution(request, monkeypatch):
    """Every attack twice: with openat2's one-call resolution and with the walk that stands in
    where openat2 is missing or filtered."""
    from ingestd._lib import safefs

    if request.param == "walk":
        monkeypatch.setattr(safefs, "_HAVE_OPENAT2", False)
    elif not safefs._HAVE_OPENAT2:
        pytest.skip("openat2 is not available here")
    return request.param


class Swapping(LocalConnector):
    """The local connector with an attacker's move run right before its `finish`."""

    kind = "local-swapping-test"
    before_finish = None

    def finish(self, ctx, outcomes, status):
        if self.before_finish is not None:
            self.before_finish()
        super().finish(ctx, outcomes, status)


class Drop:
    def __init__(self, tmp_path: Path, state: str = "state", **options):
        self.tmp = tmp_path
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.state = tmp_path / state
        self.victim = tmp_path / "victim"
        self.victim.mkdir(exist_ok=True)
        (self.victim / "victim.txt").write_bytes(VICTIM)
        config = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": state},
                              sources=[{"name": "inbox", "kind": "local", "path": "inbox", **options}])
        plugins = Plugins().load()
        self.app = App(load_config(config, plugins), plugins)
        self.source = self.app.config.source("inbox")

    def connector(self, cls=Swapping):
        return cls(self.source, self.app.registry, self.state)

    def run(self, hint=None, connector=None):
        connector = connector or self.connector()
        manifest = self.app.jobs.create("inbox", "local", "api")
        return self.app.pipeline.run(manifest, connector, hint=None if hint is None else [str(p) for p in hint])

    def stored(self) -> set[str]:
        db = sqlite3.connect(self.state / "documents.sqlite")
        try:
            return {row[0] for row in db.execute("SELECT sha256 FROM versions")}
        finally:
            db.close()

    def processed(self, area: str = "processed") -> dict[str, bytes | None]:
        """Path below `area` → content (None for a symlink), walked by descriptor (some
        paths here are past PATH_MAX)."""
        out = {}
        if not (self.state / area).is_dir():
            return out
        for top, _, files, fd in os.fwalk(self.state / area):
            for name in files:
                rel = os.path.relpath(os.path.join(top, name), self.state / area)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if os.path.stat.S_ISLNK(st.st_mode):
                    out[rel] = None
                    continue
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(f, "rb") as fh:
                    out[rel] = fh.read()
        return out

    def close(self):
        self.app.close()


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(**options):
        drop = Drop(tmp_path, **options)
        made.append(drop)
        return drop

    yield factory
    for drop in made:
        drop.close()
    for child in tmp_path.iterdir():  # by descriptor: some paths here are past PATH_MAX
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def swap_for_symlink(folder: Path, target: Path) -> Path:
    """Rename `folder` away and put a symlink to `target` in its place (issue 14, 1a)."""
    away = folder.with_name(folder.name + ".away")
    os.rename(folder, away)
    folder.symlink_to(target)
    return away


def victim_intact(drop: Drop) -> None:
    assert (drop.victim / "victim.txt").read_bytes() == VICTIM
    assert sha(VICTIM) not in drop.stored()
    assert VICTIM not in [*drop.processed().values(), *drop.processed("failed").values()]


# -- 1: a folder swapped for a symlink ------------------------------------------------------


@pytest.mark.parametrize("after", ["move", "delete"])
def test_a_folder_swapped_for_a_symlink_after_the_read_leads_nowhere(make, after):
    drop = make(after=after)
    (drop.inbox / "d").mkdir()
    (drop.inbox / "d" / "victim.txt").write_bytes(b"the dropped file\n")
    connector = drop.connector()
    connector.before_finish = lambda: swap_for_symlink(drop.inbox / "d", drop.victim)
    job = drop.run([drop.inbox / "d" / "victim.txt"], connector)
    assert job.status == "succeeded" and job.counters.ingested == 1
    victim_intact(drop)
    # the file that was read was renamed away with its folder: it stays for the next job
    assert (drop.inbox / "d.away" / "victim.txt").read_bytes() == b"the dropped file\n"


def test_a_folder_swapped_before_the_read_gives_nothing_of_the_target(make):
    drop = make(after="move")
    (drop.inbox / "d").mkdir()
    (drop.inbox / "d" / "victim.txt").write_bytes(b"settled, queued\n")
    swap_for_symlink(drop.inbox / "d", drop.victim)  # between settling and the job's read
    job = drop.run([drop.inbox / "d" / "victim.txt"])
    assert job.counters.ingested == 0 and job.counters.skipped == 1
    assert job.errors[0].code.value == "not_found"
    victim_intact(drop)


def test_the_state_database_cannot_be_moved_away_through_a_swapped_folder(make):
    drop = make(after="move")
    drop.run([])  # the store exists
    database = drop.state / "documents.sqlite"
    before = database.read_bytes()
    (drop.inbox / "d").mkdir()
    (drop.inbox / "d" / "documents.sqlite").write_bytes(b"a file named like the database\n")
    connector = drop.connector()
    connector.before_finish = lambda: swap_for_symlink(drop.inbox / "d", drop.state)
    job = drop.run([drop.inbox / "d" / "documents.sqlite"], connector)
    assert job.counters.ingested == 1
    assert database.exists() and database.read_bytes()[:16] == before[:16] == b"SQLite format 3\x00"
    assert not list((drop.state / "processed").rglob("documents.sqlite"))


# -- 2: only the inode that was read leaves --------------------------------------------------


@pytest.mark.parametrize("after", ["move", "delete"])
def test_a_file_renamed_over_the_one_read_stays_for_the_next_job(make, after):
    drop = make(after=after)
    (drop.inbox / "report.txt").write_bytes(b"version 1\n")

    def rsync_replaces_it():
        (drop.inbox / ".report.txt.tmp").write_bytes(b"version 2, never read yet\n")
        os.rename(drop.inbox / ".report.txt.tmp", drop.inbox / "report.txt")

    connector = drop.connector()
    connector.before_finish = rsync_replaces_it
    first = drop.run([drop.inbox / "report.txt"], connector)
    assert first.counters.ingested == 1
    assert (drop.inbox / "report.txt").read_bytes() == b"version 2, never read yet\n"
    assert drop.processed() == {}  # the inode read is gone (rsync unlinked it); nothing else moved
    second = drop.run([drop.inbox / "report.txt"])
    assert second.counters.ingested == 1 and sha(b"version 2, never read yet\n") in drop.stored()
    assert not (drop.inbox / "report.txt").exists()


def test_a_file_changed_in_place_after_the_read_is_not_moved(make):
    drop = make(after="move")
    path = drop.inbox / "grows.log"
    path.write_bytes(b"line 1\n")
    connector = drop.connector()
    connector.before_finish = lambda: path.open("ab").write(b"line 2\n")
    drop.run([path], connector)
    assert path.read_bytes() == b"line 1\nline 2\n" and drop.processed() == {}


# -- 3 and 4: too deep, too long, unreadable --------------------------------------------------


def test_a_file_nested_too_deep_is_refused_once_and_moved_aside(make):
    drop = make(after="move")
    path = make_chain(drop.inbox, [f"d{i}" for i in range(70)] + ["deep.txt"], b"deep\n")
    job = drop.run([path])
    assert (job.counters.skipped, job.counters.ingested) == (1, 0)
    assert job.errors[0].code.value == "invalid_name" and "deeper than 64" in job.errors[0].message
    failed = {rel: data for rel, data in drop.processed("failed").items() if not rel.endswith(".error.json")}
    assert list(failed.values()) == [b"deep\n"]
    assert len(Path(next(iter(failed))).parts) == 3, "moved flat: source/job/name"
    assert not os.path.lexists(path), "handled once: nothing left to take again"


def test_a_file_whose_processed_target_is_past_path_max_is_moved(tmp_path, make):
    drop = make(state="s" * 200 + "/" + "t" * 200, after="move")  # the processed/ target is longer
    names = [f"{i:02d}" + "x" * 198 for i in range(19)] + ["long.txt"]
    path = make_chain(drop.inbox, names, b"long\n")
    assert len(os.fsencode(path)) < 4096
    job = drop.run([path])
    assert job.status == "succeeded" and job.counters.ingested == 1, job.errors
    moved = drop.processed()
    [(rel, data)] = moved.items()
    assert data == b"long\n" and rel.endswith("/long.txt") and len(os.fsencode(str(drop.state / rel))) > 4096
    assert not os.path.lexists(path)


def test_one_bad_entry_does_not_end_the_scan(make):
    drop = make(after="move")
    (drop.inbox / "a.txt").write_bytes(b"a\n")
    make_chain(drop.inbox, ["b" * 250, *["c" * 250] * 17, "past-path-max.txt"], b"long\n")
    make_chain(drop.inbox, [f"n{i}" for i in range(66)] + ["too-deep.txt"], b"deep\n")
    (drop.inbox / "loop").symlink_to("loop")  # ELOOP if anything followed it
    (drop.inbox / "zz.txt").write_bytes(b"last in scan order\n")
    job = drop.run()
    assert sha(b"a\n") in drop.stored() and sha(b"last in scan order\n") in drop.stored()
    assert sha(b"long\n") in drop.stored()
    codes = sorted(e.code.value for e in job.errors)
    assert codes == ["invalid_name", "symlink"], job.errors  # the too-deep folder; the symlink itself


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_an_unreadable_folder_is_a_typed_outcome_and_the_rest_is_scanned():
    """EACCES, for real: the scan runs in a child process that became an unprivileged user
    (root reads everything), on a tree in a folder that user may enter."""
    import tempfile

    from ingestd.config import Source
    from ingestd_local.options import LocalOptions

    base = Path(tempfile.mkdtemp(prefix="ingestd-eacces-"))
    try:
        inbox = base / "inbox"
        (inbox / "closed").mkdir(parents=True)
        (inbox / "closed" / "secret.txt").write_bytes(b"x")
        (inbox / "open.txt").write_bytes(b"y")
        (inbox / "zz.txt").write_bytes(b"z")
        os.chmod(inbox / "closed", 0o700)  # root's, closed to others
        source = Source(name="inbox", kind="local", enabled=True, options=LocalOptions(path=inbox))
        connector = LocalConnector(source, None, base / "state")
        found = as_nobody(lambda: [x if isinstance(x, str) else [x.code.value, x.message] for x in connector.scan()],
                          readable=[base, inbox])
    finally:
        shutil.rmtree(base)
    assert [x for x in found if isinstance(x, str)] == [str(inbox / "open.txt"), str(inbox / "zz.txt")]
    assert [x for x in found if isinstance(x, list)] == [["permission", "folder not searched: Permission denied"]]


def as_nobody(work, readable):
    """Run `work` in a forked child as uid/gid 65534; returns what it returned (JSON)."""
    for path in readable:
        os.chmod(path, 0o755)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return json.loads(data)


# -- 11: the state directory's side -----------------------------------------------------------


def test_a_symlink_planted_at_processed_source_redirects_nothing(make):
    drop = make(after="move")
    outside = drop.tmp / "outside"
    outside.mkdir()
    (drop.state / "processed").mkdir(parents=True)
    (drop.state / "processed" / "inbox").symlink_to(outside)
    (drop.inbox / "a.txt").write_bytes(b"a\n")
    job = drop.run([drop.inbox / "a.txt"])
    assert job.counters.ingested == 1
    assert list(outside.iterdir()) == []
    assert (drop.inbox / "a.txt").exists(), "left in place rather than moved through the symlink"
    connector = drop.connector()
    path = str(drop.inbox / "a.txt")
    assert connector.taken(path, connector.snap(path)), "remembered as left: the watcher does not queue it again"


# -- hard links and pruning -----------------------------------------------------------------


def test_a_hard_link_to_a_file_outside_is_refused_never_read_and_left_alone(make):
    drop = make(after="move")
    os.link(drop.victim / "victim.txt", drop.inbox / "linked.txt")
    job = drop.run([drop.inbox / "linked.txt"])
    assert job.counters.skipped == 1 and job.errors[0].code.value == "hardlink"
    victim_intact(drop)
    assert os.stat(drop.inbox / "linked.txt").st_nlink == 2, "no name of it made or removed"
    assert not (drop.state / "failed").exists()
    connector = drop.connector()
    path = str(drop.inbox / "linked.txt")
    assert connector.taken(path, connector.snap(path)), "remembered as refused: the watcher leaves it be"


def test_pruning_removes_only_inside_the_tree(make):
    drop = make(after="move")
    (drop.inbox / "d" / "e").mkdir(parents=True)
    (drop.victim / "e").mkdir()
    os.utime(drop.inbox / "d" / "e", (0, 0))  # the epoch: long past the grace period
    os.utime(drop.victim / "e", (0, 0))
    swapped = []

    class SwapBeforePrune(LocalConnector):
        """Between finding `d/e` empty and removing it, `d` becomes a symlink to the victim."""

        kind = "local-prune-test"

        def _prune(self, *args):
            if not swapped:
                swapped.append(swap_for_symlink(drop.inbox / "d", drop.victim))
            super()._prune(*args)

    list(drop.connector(SwapBeforePrune).scan())
    assert swapped and (drop.victim / "e").is_dir(), "an empty folder outside the tree was removed"
    assert not (drop.inbox / "d.away" / "e").exists(), "the empty folder that was inside went, as it should"


def test_hard_links_meant_as_drops_are_ingested_when_the_source_says_so(make):
    drop = make(after="move", hard_links="ingest")
    (drop.tmp / "mine.txt").write_bytes(b"linked in on purpose\n")
    os.link(drop.tmp / "mine.txt", drop.inbox / "mine.txt")
    job = drop.run([drop.inbox / "mine.txt"])
    assert job.counters.ingested == 1 and sha(b"linked in on purpose\n") in drop.stored()
    assert not (drop.inbox / "mine.txt").exists() and (drop.tmp / "mine.txt").exists(), "only the name moved"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_where_hard_links_are_not_allowed_the_move_is_a_checked_rename():
    """fs.protected_hardlinks: a daemon may not link a file it does not own; the original
    then leaves by rename, checked to be the inode that was read."""
    import tempfile

    from ingestd_local.originals import DONE, _relocate

    if open("/proc/sys/fs/protected_hardlinks").read().strip() != "1":
        pytest.skip("fs.protected_hardlinks is off here: links are allowed")
    base = Path(tempfile.mkdtemp(prefix="ingestd-eperm-"))
    try:
        for folder in ("inbox", "state"):
            (base / folder).mkdir()
            os.chown(base / folder, 65534, 65534)
        (base / "inbox" / "a.txt").write_bytes(b"not the daemon's file\n")  # root's, 0644

        def move():
            with Dir.open(base / "inbox") as parent, Dir.open(base / "state") as target:
                try:
                    parent.link("a.txt", target, "probe")
                    return "linked"
                except PermissionError:
                    pass
                return _relocate(parent, "a.txt", target, "a.txt", identity(parent.stat("a.txt")))

        assert as_nobody(move, readable=[base]) == DONE
        assert not (base / "inbox" / "a.txt").exists()
        assert (base / "state" / "a.txt").read_bytes() == b"not the daemon's file\n"
    finally:
        shutil.rmtree(base)
