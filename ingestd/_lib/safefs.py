"""File operations confined to a directory tree that someone else can write into.

A path string is resolved by the kernel from `/` each time it is used, so a folder swapped
for a symlink between two uses (a scan and a read, a read and a move) leads elsewhere.
Here every operation starts from a directory held open (`Dir`, an O_PATH descriptor) and
opens each folder on the way with O_NOFOLLOW|O_DIRECTORY, relative to the one before
(openat semantics): a component that is a symlink at that instant fails (ELOOP/ENOTDIR)
instead of being followed, `..` is refused, and the last component is never followed
either. Where the kernel has openat2, `open_below`/`lstat_below` do the same walk in one
call (RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH). Only the root of a tree is opened by path;
that path is the operator's.

O_PATH descriptors make no inotify events and need no read permission, so walking costs
one openat and one close per folder and does not feed the watcher's own queue.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable

_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def identity(st: os.stat_result) -> Identity:
    """What makes "the file that was read" the same file later: its inode, unchanged."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class Dir:
    """A directory held open; every name below it is looked up relative to it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Dir":
        """Open a tree's root by its configured path (trusted, so symlinks in it are followed)."""
        return cls(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        # a root replaced while jobs still walk from it is closed when the last one lets go
        try:
            self.close()
        except OSError:
            pass

    def __enter__(self) -> "Dir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fstat(self) -> os.stat_result:
        return os.fstat(self.fd)

    # -- walking ------------------------------------------------------------------------

    def walk(self, parts: Iterable[str], *, create: bool = False, mode: int = 0o750) -> "Dir":
        """The folder `parts` below this one (a new Dir the caller closes). With `create`,
        missing folders are made (never through a symlink)."""
        fd = self.fd
        try:
            for part in parts:
                if part in ("", ".", "..") or "/" in part:
                    raise OSError(errno.EINVAL, "path component is empty, '.', '..' or holds '/'", part)
                fd = _step(fd, part, create, mode, close=fd != self.fd)
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        return Dir(os.dup(fd) if fd == self.fd else fd)

    def parent_of(self, parts: list[str]) -> "Dir":
        return self.walk(parts[:-1])

    # -- one name in this folder -----------------------------------------------------------

    def stat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def open_file(self, name: str, flags: int, mode: int = 0o640) -> int:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def link(self, name: str, dst: "Dir", dst_name: str) -> None:
        """A second name for the file `name` (never for what a symlink points at)."""
        os.link(name, dst_name, src_dir_fd=self.fd, dst_dir_fd=dst.fd, follow_symlinks=False)

    def rename(self, name: str, dst: "Dir", dst_name: str, *, replace: bool = True) -> None:
        if replace:
            os.rename(name, dst_name, src_dir_fd=self.fd, dst_dir_fd=dst.fd)
            return
        if _libc.renameat2(self.fd, os.fsencode(name), dst.fd, os.fsencode(dst_name), _RENAME_NOREPLACE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), dst_name)

    def entries(self) -> list[tuple[str, bool]]:
        """(name, is a folder) for each entry, sorted by name; symlinks are not folders."""
        fd = os.open(".", _LIST, dir_fd=self.fd)
        try:
            with os.scandir(fd) as it:
                out = [(e.name, _is_dir(e)) for e in it]
        finally:
            os.close(fd)
        out.sort()
        return out


class Folders:
    """Folders below a root, each walked once and then held, for one job: files in the same
    folder need no new walk. A held folder stays the folder that was walked (renamed or
    swapped later, it is not followed). At most `size` are held; one let go is closed when
    its last user is done with it, never under a thread still using it."""

    def __init__(self, root: Dir, size: int = 64):
        self.root, self.size = root, size
        self._held: OrderedDict[tuple[str, ...], Dir] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, parts: list[str] | tuple[str, ...]) -> Dir:
        key = tuple(parts)
        if not key:
            return self.root
        with self._lock:
            folder = self._held.get(key)
            if folder is not None:
                self._held.move_to_end(key)
                return folder
        folder = self.root.walk(key)
        with self._lock:
            folder = self._held.setdefault(key, folder)
            if len(self._held) > self.size:
                self._held.popitem(last=False)
        return folder


# openat2(2) with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH does the walk above in one system call
# (Linux 5.6+): no symlink anywhere on the way, nothing above the starting folder. Where it is
# missing or filtered (seccomp answers EPERM), and for paths past PATH_MAX, the walk serves.
_SYS_OPENAT2 = 437  # the same number on every architecture Linux added it to
_RESOLVE = 0x04 | 0x08  # RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


# syscall(2) is variadic; on Linux its integer and pointer arguments travel as fixed ones do
_syscall = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                            ctypes.c_size_t, use_errno=True)(("syscall", _libc))
_HOWS: dict[int, tuple[_OpenHow, int]] = {}  # flags → (struct, its address): read-only once made


def _openat2(dirfd: int, rel: bytes, flags: int) -> int:
    how = _HOWS.get(flags)
    if how is None:
        made = _OpenHow(flags, 0, _RESOLVE)
        how = _HOWS.setdefault(flags, (made, ctypes.addressof(made)))
    fd = _syscall(_SYS_OPENAT2, dirfd, rel, how[1], 24)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(rel))
    return fd


def _probe_openat2() -> bool:
    try:
        os.close(_openat2(-100, b".", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
        return True
    except OSError:
        return False


_HAVE_OPENAT2 = _probe_openat2()
_WALK_INSTEAD = (errno.ENAMETOOLONG, errno.EAGAIN, errno.ENOSYS, errno.EPERM)


def open_below(root: Dir, parts: list[str], flags: int) -> int:
    """Open the entry `parts` below `root` (never through a symlink, the last one included;
    with O_PATH a symlink there is opened as itself)."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if _HAVE_OPENAT2:
        try:
            return _openat2(root.fd, os.fsencode("/".join(parts)), flags)
        except OSError as exc:
            if exc.errno not in _WALK_INSTEAD:
                raise
    return _walked(root, parts, lambda name, fd: os.open(name, flags, dir_fd=fd))


def lstat_below(root: Dir, parts: list[str]) -> os.stat_result:
    """lstat of the entry `parts` below `root`, no folder on the way followed if it is a
    symlink (the watcher's hot path: no Dir objects, one system call when it can)."""
    if _HAVE_OPENAT2:
        try:
            fd = _openat2(root.fd, os.fsencode("/".join(parts)), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in _WALK_INSTEAD:
                raise
        else:
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
    return _walked(root, parts, lambda name, fd: os.stat(name, dir_fd=fd, follow_symlinks=False))


def _walked(root: Dir, parts: list[str], last):
    """`last(name, parent_fd)` on the entry `parts` below `root`, reached one folder at a
    time without following a symlink (where openat2 cannot resolve the path itself)."""
    fd = root.fd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _WALK, dir_fd=fd)
            if fd != root.fd:
                os.close(fd)
            fd = nxt
        return last(parts[-1], fd)
    finally:
        if fd != root.fd:
            os.close(fd)


def _step(fd: int, part: str, create: bool, mode: int, close: bool) -> int:
    """The child folder `part` of `fd` (closing `fd` on success when `close`)."""
    try:
        nxt = os.open(part, _WALK, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(part, mode, dir_fd=fd)
        except FileExistsError:
            pass
        nxt = os.open(part, _WALK, dir_fd=fd)
    if close:
        os.close(fd)
    return nxt


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # looked at again, with a typed outcome, when it is staged


def copy_into(src_fd: int, dst: Dir, name: str) -> None:
    """Copy an open file into a new file `name` of `dst` (a move across filesystems)."""
    out = dst.open_file(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        offset = 0
        while sent := os.sendfile(out, src_fd, offset, 1 << 24):  # copy_file_range refuses other filesystems
            offset += sent
    except OSError:
        os.close(out)
        dst.unlink(name)
        raise
    os.close(out)


EMPTY = "empty"


class TooDeep(OSError):
    """A folder below the depth a walk searches (ENAMETOOLONG, as the kernel would say)."""


def walk_files(root: Dir, max_depth: int, ignored=lambda name: False, skip: frozenset = frozenset()):
    """Depth-first, by name, below `root`: `(parent, parts, None)` for each entry that is
    not a folder, `(parent, parts, EMPTY)` for each folder found empty, `(parent, parts,
    error)` for a folder that could not be listed or lies deeper than `max_depth` (its
    content is not searched). `parent` is the held folder holding `parts[-1]`, valid until
    the next item. Names `ignored` are left out (and not descended into), and so are
    folders whose (st_dev, st_ino) is in `skip`. One entry's error never ends the walk; at
    most `max_depth + 2` descriptors are open at once."""
    try:
        entries = root.entries()
    except OSError as exc:
        yield root, [], exc
        return
    yield from _walk(root, [], entries, max_depth, ignored, skip)


def _walk(folder: Dir, prefix: list[str], entries, depth_left: int, ignored, skip):
    for name, is_dir in entries:
        if ignored(name):
            continue
        parts = [*prefix, name]
        if not is_dir:
            yield folder, parts, None
            continue
        if depth_left <= 0:
            yield folder, parts, TooDeep(errno.ENAMETOOLONG, "folder nested too deep")
            continue
        try:
            sub = folder.walk([name])
        except OSError as exc:
            yield folder, parts, exc
            continue
        with sub:
            try:
                if skip and _inode(sub.fstat()) in skip:
                    continue
                inner = sub.entries()
            except OSError as exc:
                yield folder, parts, exc
                continue
            if not inner:
                yield folder, parts, EMPTY
                continue
            yield from _walk(sub, parts, inner, depth_left - 1, ignored, skip)


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino
