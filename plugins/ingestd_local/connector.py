"""Drop-folder ingestion: take each settled regular file, then move it out of the way.

Anyone who can write into the folder is untrusted. Every look at it (scan, stat, open,
move, delete, prune) starts from the folder's root held open and goes down without
following a symlink anywhere (`ingestd.plugin.kit`: `Dir`, `open_below`, `lstat_below`);
no path is resolved from `/` again. Core opens each staged file through `Staged.opener`,
which notes the inode it read, and only that inode is moved or deleted afterwards.

The original is only moved (or deleted) in `finish`, after its blob, record and the job
manifest are durable, so a crash at any point leaves the file ingested or still waiting
in the folder, never lost.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from functools import partial
from pathlib import Path

from ingestd.errors import Code, ConnectorError, io_error_code
from ingestd.plugin import Failed, JobContext, Outcome, Staged, Unchanged, WatchedConnector
from ingestd.plugin.kit import (
    EMPTY, MAX_DEPTH, Dir, TooDeep, display, file_uri, identity, lstat_below, open_below, walk_files,
)

from .memory import FAILED, LEFT, TAKEN, Memory
from .memory import FILE as MEMORY_FILE
from .moves import Journal
from .options import LocalOptions
from .originals import Item, Originals

RETRY_LATER = {Code.TRANSIENT, Code.DISK_FULL, Code.INTERRUPTED, Code.IO}
EMPTY_FOLDER_GRACE = 300.0  # seconds a subfolder must sit empty and untouched before it goes
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # on the way to a file: it is not in the tree now


class LocalConnector(WatchedConnector):
    kind = "local"
    Options = LocalOptions
    description = "a drop folder on local disk"

    def __init__(self, source, credentials, state_dir: Path):
        super().__init__(source, credentials, state_dir)
        self._prefix = str(self.root) + os.sep
        self._lock = threading.Lock()
        self._dir: Dir | None = None
        self._memory: Memory | None = None
        self._memory_absent_until = 0.0

    @property
    def root(self) -> Path:
        return self.options.path

    @property
    def leaves_originals(self) -> bool:
        return self.options.after == "keep"

    def check(self) -> list[str]:
        problems = []
        if not self.root.is_dir():
            problems.append(f'sources "{self.source.name}": path: {self.root} is not a directory (create it)')
        state = os.path.realpath(self.state_dir)
        root = os.path.realpath(self.root)
        if state == root or state.startswith(root + os.sep) or root.startswith(state + os.sep):
            problems.append(
                f'sources "{self.source.name}": path: {self.root} overlaps daemon.state_dir {self.state_dir}; '
                "the daemon must never write inside a watched folder"
            )
        return problems

    def close(self) -> None:
        with self._lock:
            if self._memory is not None:
                self._memory.close()
                self._memory = None
            self._dir = None  # closed when the last job using it lets go

    # -- the held root ------------------------------------------------------------------------

    def _tree(self) -> Dir:
        with self._lock:
            if self._dir is None:
                self._dir = Dir.open(self.root)
            return self._dir

    def _fresh_tree(self) -> Dir:
        """The root, reopened if the folder at the configured path was replaced (deleted
        and made again). Raises FileNotFoundError when there is none."""
        now = os.stat(self.root)
        tree = self._tree()
        held = tree.fstat()
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
            with self._lock:
                self._dir = Dir.open(self.root)  # the old one closes once no job holds it
                tree = self._dir
        return tree

    def _mem(self, create: bool = True) -> Memory | None:
        """The memory of what jobs left in place; None (without `create`) while there is none,
        so a folder whose files all leave never makes one (looked for at most once a second:
        a one-shot run in another process may make it)."""
        if self._memory is None and not create and time.monotonic() < self._memory_absent_until:
            return None  # the common case, without the lock
        with self._lock:
            if self._memory is None:
                folder = self.state_dir / "sources" / self.source.name
                if not create:
                    now = time.monotonic()
                    if now < self._memory_absent_until:
                        return None
                    if not (folder / MEMORY_FILE).exists():
                        self._memory_absent_until = now + 1.0
                        return None
                self._memory = Memory(folder, self.options.model_dump(mode="json"))
            return self._memory

    def _parts(self, path: str) -> list[str] | None:
        if not path.startswith(self._prefix):
            return None
        parts = path[len(self._prefix):].split(os.sep)
        return None if "" in parts or "." in parts or ".." in parts else parts

    # -- the watcher's view (WatchedConnector) ---------------------------------------------

    def scan(self, start: str | None = None):
        try:
            tree = self._fresh_tree()
        except OSError:
            return  # the watcher reports a missing folder itself
        for parent, parts, kind in self._walk(tree, start):
            if kind is None:
                yield self._prefix + os.sep.join(parts)
            else:
                yield self._unsearchable(parts, kind)

    def snap(self, path: str):
        parts = self._parts(path)
        if parts is None:
            return None
        try:
            st = lstat_below(self._tree(), parts)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            return ("error", exc.errno)  # still a candidate: its job records the typed outcome
        if stat.S_ISDIR(st.st_mode):
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def taken(self, path: str, snap) -> bool:
        memory = self._mem(create=False)
        if memory is None or not isinstance(snap, tuple) or snap[0] == "error" or not path.startswith(self._prefix):
            return False
        state = memory.state(path[len(self._prefix):], snap)
        return state in (FAILED, LEFT) or (state == TAKEN and self.leaves_originals)

    def _walk(self, tree: Dir, start: str | None):
        """(parent, parts, kind) below `start` (a path inside the root, default the root),
        pruning empty folders on the way."""
        prefix: list[str] = []
        if start is not None and start != str(self.root):
            prefix = self._parts(start) or []
            if not prefix or len(prefix) > MAX_DEPTH:
                return  # outside, or below the depth searched (the walk that got there said so)
        try:
            base = tree.walk(prefix)
        except OSError:
            return  # gone again, or swapped for a symlink: nothing of ours there
        skip = self._state_inode()
        with base:
            for parent, parts, kind in walk_files(base, MAX_DEPTH - len(prefix), self.options.ignored, skip):
                if kind == EMPTY:
                    self._prune(parent, parts[-1])
                    continue
                yield parent, prefix + parts, kind

    def _state_inode(self) -> frozenset:
        try:
            st = os.stat(self.state_dir)
        except OSError:
            return frozenset()
        return frozenset({(st.st_dev, st.st_ino)})

    def _unsearchable(self, parts: list[str], exc: OSError) -> Failed:
        why = f"nested deeper than {MAX_DEPTH} folders" if isinstance(exc, TooDeep) else exc.strerror or str(exc)
        return Failed(file_uri(self._prefix + os.sep.join(parts)), io_error_code(exc), f"folder not searched: {why}",
                      skip=True)

    def _prune(self, parent: Dir, name: str) -> None:
        """Remove an empty subfolder that nobody has touched for a while.

        Folders dropped in would otherwise pile up as empty skeletons once their files are
        taken, each one costing an inotify watch for ever. Only folders empty and unchanged
        for `EMPTY_FOLDER_GRACE` go, so a writer between its mkdir and its first file is
        left alone; rmdir itself refuses a folder that gained an entry meanwhile, and it is
        relative to the held parent, so a swapped folder on the way cannot send it outside.
        With `after = "keep"` the folder's layout is the user's, and it is never touched.
        """
        if not self.options.remove_empty_folders or self.leaves_originals:
            return
        try:
            st = parent.stat(name)
            if stat.S_ISDIR(st.st_mode) and time.time() - st.st_mtime >= EMPTY_FOLDER_GRACE:
                parent.rmdir(name)
        except OSError:
            pass  # gone already, not empty any more, or not ours to remove

    # -- staging ---------------------------------------------------------------------------

    def stage(self, ctx: JobContext):
        try:
            tree = self._fresh_tree()
        except OSError:
            raise ConnectorError(Code.NOT_FOUND, f"drop folder {self.root} does not exist") from None
        finished = self._finish_left_moves(tree, ctx)
        events = ((self.describe(p) for p in ctx.hint if str(p) not in finished) if ctx.hint is not None
                  else self._scan_events(tree))
        known = 0
        for event in events:
            if ctx.stop.is_set():
                return
            if self.leaves_originals and isinstance(event, Staged) and self._unchanged(tree, event.token):
                known += 1
                event = Unchanged(event.origin_uri, token=event.token)
            yield event
        if known:
            ctx.log.info("kept files unchanged since taken, not read again", files=known)

    def _journal(self) -> Journal:
        return Journal(self.state_dir / "sources" / self.source.name)

    def _finish_left_moves(self, tree: Dir, ctx: JobContext) -> set[str]:
        """Originals a killed job left both in the folder and in the state directory
        (moves.py): the folder's name goes now. Their paths, so a hint skips them."""
        done = self._journal().finish_left(tree, self.state_dir)
        if done:
            ctx.log.info("finished moving originals a stopped job had left in both places", files=len(done))
        return {self._prefix + rel for rel in done}

    def _scan_events(self, tree: Dir):
        for parent, parts, kind in self._walk(tree, None):
            if kind is not None:
                yield self._unsearchable(parts, kind)
                continue
            event = self._event(parts)
            if self.leaves_originals:
                try:
                    st = parent.stat(parts[-1])
                    event.token.seen = st.st_ino, st.st_size, st.st_mtime_ns
                except OSError:
                    pass
            yield event

    def _unchanged(self, tree: Dir, item: Item) -> bool:
        now = item.seen
        if now is None:
            try:
                st = lstat_below(tree, item.parts)
            except OSError:
                return False
            now = st.st_ino, st.st_size, st.st_mtime_ns
        memory = self._mem(create=False)
        return memory is not None and memory.state(item.rel, now) == TAKEN

    def describe(self, path):
        """The event for one path. Core opens the file through `opener` (in its worker
        threads) and refuses non-regular, hard-linked, empty and oversized files."""
        path = str(path)
        parts = self._parts(path)
        if parts is None:
            return Failed(file_uri(path), Code.INVALID_NAME, "outside the drop folder", skip=True)
        return self._event(parts)

    def _event(self, parts: list[str]):
        rel = os.sep.join(parts)
        path = self._prefix + rel
        item = Item(rel, parts)
        if len(parts) - 1 > MAX_DEPTH:
            return Failed(file_uri(path), Code.INVALID_NAME, f"nested deeper than {MAX_DEPTH} folders", skip=True,
                          token=item)
        return Staged(
            origin_uri=file_uri(path), path=path, name=parts[-1], metadata={"relpath": display(rel)},
            max_size=self.options.max_file_size, allow_empty=False, allow_hardlinks=self.options.hard_links == "ingest",
            token=item,
            opener=partial(self._open, item),
        )

    def _open(self, item: Item, flags: int) -> tuple[int, os.stat_result]:
        """Open a staged file for core, relative to the held root, and note what was read."""
        tree = self._tree()
        try:
            fd = open_below(tree, item.parts, flags)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = _lstat_or_none(tree, item.parts)
            if exc.errno == errno.ELOOP and st is not None and stat.S_ISLNK(st.st_mode):
                item.read = identity(st)  # the file itself is a symlink: noted, to move it aside
                raise
            # a folder on the way became a symlink, or a file: not in the drop folder now
            raise FileNotFoundError(errno.ENOENT, "no longer in the drop folder", item.rel) from exc
        st = os.fstat(fd)
        item.read = identity(st)
        return fd, st

    # -- after the commit ---------------------------------------------------------------------

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        try:
            tree = self._tree()
        except OSError:
            tree = None  # the folder is gone, and its originals with it
        originals = Originals(tree, str(self.state_dir), self.source.name, ctx, self.options.after)
        decisions = list(_decisions(outcomes))
        journal = self._journal()
        try:
            journal.note(originals.intended(decisions))  # before the first link: see moves.py
            for item, code, message in decisions:
                if code is None:
                    originals.taken(item)
                else:
                    originals.refused(item, code, message)
        finally:
            originals.close()
        journal.clear()
        memory = self._mem(create=bool(originals.rows))
        if memory is not None:
            memory.remember(originals.rows)
            memory.forget(originals.moved)


def _decisions(outcomes: list[Outcome]):
    """(item, None, "") for each original taken, (item, code, message) for each refused for
    good; an original to try again later is left out (it stays where it is)."""
    for out in outcomes:
        item = out.event.token
        if not isinstance(item, Item) or isinstance(out.event, Unchanged):
            continue
        if out.outcome in ("ingested", "unchanged"):
            yield item, None, ""
        elif out.code not in RETRY_LATER and out.code != Code.NOT_FOUND:
            yield item, out.code, out.message or ""


def _lstat_or_none(tree: Dir, parts: list[str]) -> os.stat_result | None:
    try:
        return lstat_below(tree, parts)
    except OSError:
        return None
