"""libmagic handles for MIME sniffing, one per thread, all reading one mapped database.

Why a handle per thread: python-magic locks around every call on a handle, and with one
handle for the process the enrich threads of a 20,000-file one-shot spent 28% of their wall
time waiting for that lock (bench/RESULTS.md, issue 20's targets). Why one database: a
handle loaded the usual way (`magic_load`) reads its own 8 MiB copy of `magic.mgc`, which is
what made four handles cost ~30 MiB more than one (docs/reliability.md, Load). libmagic's
`magic_load_buffers` instead reads the compiled database from memory it does not copy: the
file is mapped once, copy-on-write, and every handle points into the same pages.

Where the database cannot be mapped (no `magic_load_buffers`, no compiled file where
libmagic looks, a file it refuses), a handle loads the usual way: more memory, same answers.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

import magic as _pm

_lib = _pm.libmagic
_map_lock = threading.Lock()
_database: list[mmap.mmap] | None = None
_mapped = False


def _compiled(path: str) -> str | None:
    """The compiled database libmagic takes for one entry of its path, "" for an entry
    it would skip or that adds no rule (a missing file, a text file of comments, like
    Debian's /etc/magic), None for one only `magic_load` can read (rules in text, a folder)."""
    if os.path.isfile(path if path.endswith(".mgc") else path + ".mgc"):
        return path if path.endswith(".mgc") else path + ".mgc"
    if not os.path.lexists(path):
        return ""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        rules = [line for line in fh.read(65536).splitlines() if line.strip() and not line.lstrip().startswith(b"#")]
    return "" if not rules else None


def _database_paths() -> list[str] | None:
    """The compiled databases libmagic would load by default (`MAGIC` in the environment
    included), or None where the default is more than compiled files."""
    getpath = getattr(_lib, "magic_getpath", None)
    if getpath is None or not hasattr(_lib, "magic_load_buffers"):
        return None
    getpath.restype = ctypes.c_char_p
    getpath.argtypes = [ctypes.c_char_p, ctypes.c_int]
    raw = getpath(None, 0)
    found = [_compiled(entry) for entry in os.fsdecode(raw or b"").split(os.pathsep) if entry]
    if not found or None in found:
        return None
    return [path for path in found if path] or None


def _map(path: str) -> mmap.mmap:
    with open(path, "rb") as fh:  # copy-on-write: libmagic may byte-swap a foreign one in place
        return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _map_database() -> list[mmap.mmap] | None:
    global _database, _mapped
    with _map_lock:
        if not _mapped:
            _mapped = True
            try:
                paths = _database_paths()
                _database = [_map(path) for path in paths] if paths else None
            except (OSError, ValueError):
                _database = None
        return _database


def _load_shared(cookie, database: list[mmap.mmap]) -> bool:
    load = _lib.magic_load_buffers
    load.restype = ctypes.c_int
    load.argtypes = [_pm.magic_t, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t]
    n = len(database)
    buffers = (ctypes.c_void_p * n)(*(ctypes.addressof(ctypes.c_char.from_buffer(m)) for m in database))
    sizes = (ctypes.c_size_t * n)(*(len(m) for m in database))
    return load(cookie, buffers, sizes, n) == 0


class Handle:
    """One libmagic cookie answering MIME types, for one thread at a time (no lock: the
    caller keeps it to its thread)."""

    def __init__(self):
        self._cookie = _pm.magic_open(_pm.MAGIC_MIME_TYPE)
        self._close = _pm.magic_close
        database = _map_database()
        self._database = database  # the pages it points into live as long as it does
        if database is None or not _load_shared(self._cookie, database):
            self._database = None
            _pm.magic_load(self._cookie, None)
        if _pm._has_param:
            try:  # as python-magic does, for files past libmagic's default name/use limit
                _pm.magic_setparam(self._cookie, _pm.MAGIC_PARAM_NAME_MAX, 64)
            except _pm.MagicException:
                pass

    @property
    def shares_database(self) -> bool:
        return self._database is not None

    def from_buffer(self, buf: bytes) -> str:
        try:
            return _pm.maybe_decode(_pm.magic_buffer(self._cookie, buf))
        except _pm.MagicException as exc:
            if exc.message is None:  # libmagic 5.09 answers NULL without saying why
                return "application/octet-stream"
            raise

    def __del__(self):
        close = getattr(self, "_close", None)  # held here: module globals are gone at exit
        if close is not None and self._cookie:
            close(self._cookie)
            self._cookie = None
