"""What happens to a drop folder's originals once their job is durable.

Every step goes through held directories (`Dir`): the drop folder's side is walked from
its root, the state side from the state directory, each folder opened without following
symlinks, so nothing outside the two trees is ever moved, linked or deleted, whatever is
swapped in at any instant (a symlink planted at `processed/<source>` included).

Only the inode a job read leaves the folder: right before the link, rename or unlink, the
file at that name is compared (device, inode, size, mtime) with what was read. A file
renamed over it meanwhile (rsync does exactly that) stays, and the next job takes it.
Originals leave by link + unlink, not rename: inotify reports a rename out of a watched
tree as a half move, and watchdog holds every later event for half a second waiting for
its other half. Where hard links are refused (protected_hardlinks, EPERM) a rename is
checked after the fact and undone if it caught another file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass

from ingestd.errors import Code, io_error_code
from ingestd.plugin import JobContext
from ingestd.plugin.kit import MAX_DEPTH, Dir, Folders, Identity, copy_into, display, identity, safe_name, safe_parts

from .memory import FAILED, LEFT, TAKEN, Snap
from .moves import Move

GONE, REPLACED, STUCK, DONE = "gone", "replaced", "stuck", "done"
_LINK_REFUSED = (errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP)
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


@dataclass
class Item:
    """A candidate file: its path below the root, and the inode a job read there."""

    rel: str
    parts: list[str]
    read: Identity | None = None
    seen: Snap | None = None  # its snap when a scan found it (keep folders only)


def snap_of(ident: Identity) -> Snap:
    return ident[1], ident[2], ident[3]


class Originals:
    """Moves, deletes or remembers one job's originals; collects the memory's new rows."""

    def __init__(self, tree: Dir | None, state_dir: str, source: str, ctx: JobContext, after: str):
        self.tree, self.source, self.ctx, self.after = tree, source, ctx, after
        # walked from the root when this job's first original there leaves, then held
        self.drop = Folders(tree) if tree is not None else None
        self.state_dir = state_dir
        self.rows: list[tuple[str, Snap, str]] = []
        self.moved: list[str] = []
        self._state: Dir | None = None
        self._folders: dict[tuple[str, tuple[str, ...]], Dir] = {}

    def close(self) -> None:
        for folder in self._folders.values():
            folder.close()
        if self._state is not None:
            self._state.close()

    def area(self, code: Code | None) -> str | None:
        """Where an original goes: `processed` or `failed` (an area of the state directory),
        None when it stays or is deleted. `code` is None for one taken, else why it was
        refused for good. A refused hard link stays: a name of a file that may live outside
        the folder never enters the state directory (a recursive chmod there would reach it)."""
        if self.after == "keep":
            return None
        if code is None:
            return "processed" if self.after == "move" else None
        return None if code == Code.HARDLINK else "failed"

    def intended(self, decisions: list[tuple[Item, Code | None, str]]) -> list[Move]:
        """The moves `taken`/`refused` will make for these decisions, for the journal."""
        out = []
        for item, code, _message in decisions:
            area = self.area(code)
            ident = (item.read or self._identity(item)) if area is not None else None
            if ident is not None:
                out.append(Move(tuple(item.parts), (area, self.source, self.ctx.job_id, *self._target_parts(item)),
                                ident))
        return out

    def taken(self, item: Item) -> None:
        """An ingested (or unchanged) original: move, delete or keep it."""
        if self.after == "keep":
            if item.read is not None:
                self.rows.append((item.rel, snap_of(item.read), TAKEN))
            return
        result = self._move(item, "processed") if self.area(None) else self._delete(item)
        self._settle(item, result, LEFT)

    def refused(self, item: Item, code: Code, message: str) -> None:
        """An original refused for good: to `failed/` with its error beside it, or, in a keep
        folder and for a hard link, remembered as failed until it changes."""
        if self.area(code) is None:
            now = item.read or self._identity(item)
            if now is not None:
                self.rows.append((item.rel, snap_of(now), FAILED))
            return
        result = self._move(item, "failed", error={"job_id": self.ctx.job_id, "code": code.value, "message": message})
        self._settle(item, result, FAILED)

    def _settle(self, item: Item, result: tuple[str, Identity | None], state: str) -> None:
        outcome, ident = result
        if outcome == DONE:
            self.moved.append(item.rel)
        elif outcome == STUCK and ident is not None:
            self.rows.append((item.rel, snap_of(ident), state))

    # -- the drop folder's side ------------------------------------------------------------

    def _identity(self, item: Item) -> Identity | None:
        if self.drop is None:
            return None
        try:
            return identity(self.drop.get(item.parts[:-1]).stat(item.parts[-1]))
        except OSError:
            return None

    def _delete(self, item: Item) -> tuple[str, Identity | None]:
        return self._act(item, "delete", _unlink)

    def _move(self, item: Item, area: str, error: dict | None = None) -> tuple[str, Identity | None]:
        def move(parent: Dir, name: str, expect: Identity) -> str:
            try:
                target, target_name = self._target(area, item)
            except OSError as exc:  # the state side (a planted symlink, a full disk): never "gone"
                raise _StateSide(exc) from None
            outcome = _relocate(parent, name, target, target_name, expect)
            if outcome == DONE and error is not None:
                _write_error(target, target_name + ".error.json", error)
            return outcome

        return self._act(item, f"move to {area}/", move)

    def _act(self, item: Item, action: str, step) -> tuple[str, Identity | None]:
        """Run `step(parent, name, expect)` on the original if it is still the file read."""
        if self.drop is None:
            return GONE, None
        name = item.parts[-1]
        try:  # the parent is held for this job's other originals there
            parent = self.drop.get(item.parts[:-1])
            now = identity(parent.stat(name))
        except OSError as exc:
            if exc.errno in _GONE:
                return GONE, None  # not there, or a folder on its path is now a symlink: not ours
            return self._stuck(item, action, exc, item.read)
        if item.read is not None and now != item.read:
            return REPLACED, None
        expect = item.read or now
        try:
            return step(parent, name, expect), expect
        except _StateSide as side:
            return self._stuck(item, action, side.exc, expect)
        except OSError as exc:
            if exc.errno in _GONE:
                return GONE, None
            return self._stuck(item, action, exc, expect)

    def _stuck(self, item: Item, action: str, exc: OSError, ident: Identity | None) -> tuple[str, Identity | None]:
        self.ctx.log.warning("original left in place; it is not taken again until it changes",
                             path=display(item.rel), action=action, error=exc.strerror or str(exc),
                             code=io_error_code(exc).value)
        return STUCK, ident

    # -- the state directory's side ----------------------------------------------------------

    @staticmethod
    def _target_parts(item: Item) -> list[str]:
        """The original's path below `<area>/<source>/<job_id>/`: its own, sanitised; a path
        nested deeper than MAX_DEPTH goes flat, named after all of it."""
        folders = item.parts[:-1]
        if len(folders) >= MAX_DEPTH:
            return [safe_name(item.rel)]
        return [*(safe_parts(folders) if folders else []), safe_name(item.parts[-1])]

    def _target(self, area: str, item: Item) -> tuple[Dir, str]:
        """The folder and name an original goes to: `<area>/<source>/<job_id>/<path>`."""
        *folders, name = self._target_parts(item)
        key = (area, tuple(folders))
        folder = self._folders.get(key)
        if folder is None:
            if self._state is None:
                self._state = Dir.open(self.state_dir)
            folder = self._state.walk([area, self.source, self.ctx.job_id, *folders], create=True)
            self._folders[key] = folder
        return folder, name


def _unlink(parent: Dir, name: str, expect: Identity) -> str:
    parent.unlink(name)  # `_act` compared it with what was read just before
    return DONE


class _StateSide(Exception):
    def __init__(self, exc: OSError):
        self.exc = exc


def _relocate(parent: Dir, name: str, target: Dir, target_name: str, expect: Identity) -> str:
    """Move `name` (expected to be `expect`) from `parent` to `target`; DONE or REPLACED."""
    try:
        parent.link(name, target, target_name)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return _copy_across(parent, name, target, target_name, expect)
        if exc.errno in _LINK_REFUSED:
            return _rename_checked(parent, name, target, target_name, expect)
        raise
    if identity(target.stat(target_name)) != expect:  # swapped between the check and the link
        target.unlink(target_name)
        return REPLACED
    if identity(parent.stat(name)) != expect:  # swapped after the link: ours is the one read
        return DONE
    parent.unlink(name)
    return DONE


def _rename_checked(parent: Dir, name: str, target: Dir, target_name: str, expect: Identity) -> str:
    parent.rename(name, target, target_name)
    if identity(target.stat(target_name)) == expect:
        return DONE
    try:  # another file was swapped in at the last instant: give it back
        target.rename(target_name, parent, name, replace=False)
    except OSError:
        target.rename(target_name, target, target_name + ".replaced~" + os.urandom(4).hex(), replace=False)
    return REPLACED


def _copy_across(parent: Dir, name: str, target: Dir, target_name: str, expect: Identity) -> str:
    """The state directory is on another filesystem: copy what is open, then unlink."""
    if stat.S_ISLNK(parent.stat(name).st_mode):  # a refused symlink: its text, never its target
        os.symlink(os.readlink(name, dir_fd=parent.fd), target_name, dir_fd=target.fd)
        if identity(parent.stat(name)) == expect:
            parent.unlink(name)
        return DONE
    fd = parent.open_file(name, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if identity(os.fstat(fd)) != expect:
            return REPLACED
        copy_into(fd, target, target_name)
    finally:
        os.close(fd)
    if identity(parent.stat(name)) == expect:
        parent.unlink(name)
    return DONE


def _write_error(folder: Dir, name: str, error: dict) -> None:
    fd = folder.open_file(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(error, ensure_ascii=False, indent=2).encode() + b"\n")
