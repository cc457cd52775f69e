"""Hostile names from remote sources: what the campaign generates, and how it watches
where ingestd writes.

Three independent views of "nothing written outside the state directory":

- `WriteWatch`: a Python audit hook that sees every open-for-writing, rename, link,
  symlink, mkdir, removal and truncation this process attempts while armed (ingestd's
  own code, the connectors, the libraries they call), each resolved to a real path;
- `Snapshot`: the test's root directory outside the state directory, compared before and
  after (names, sizes, modification times);
- `strays`: new entries in the system temp directory whose names carry a piece of a
  name the campaign generated.

Inside the state directory every file must sit where the README says files go
(`STATE_LAYOUT`).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from pathlib import Path

from hypothesis import strategies as st

# -- where ingestd may write ------------------------------------------------------------------

_HEX64 = r"[0-9a-f]{64}"
_JOB = r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}"
STATE_LAYOUT = [re.compile(p) for p in (
    rf"blobs/sha256/[0-9a-f]{{2}}/{_HEX64}",
    r"documents\.sqlite(-wal|-shm|-journal)?",
    rf"jobs/{_JOB}\.(json|items\.jsonl)",
    r"jobs/\.finished-jobs",  # the finished jobs' index, read at start (docs/reliability.md)
    r"locks/[a-z0-9][a-z0-9_-]*\.lock",
    r"SCHEMA\.(json|lock)",  # the state's schema marker and migration lock (docs/upgrading.md)
    r"sources/[a-z0-9][a-z0-9_-]*/(s3-objects|sharepoint)\.sqlite(-wal|-shm|-journal)?",
    r"sources/[a-z0-9][a-z0-9_-]*/libraries/[0-9a-f]{32}\.sqlite(-wal|-shm|-journal)?",  # SharePoint: one per library
    r"sources/[a-z0-9][a-z0-9_-]*/SCHEMA\.json",  # a source directory's own schema marker (docs/upgrading.md)
    r"sources/[a-z0-9][a-z0-9_-]*/trust\.pem",
    r"sources/[a-z0-9][a-z0-9_-]*/SCHEMA\.(json|lock)",  # a source's own schema marker
    # SharePoint: a state file per library, named by a digest of its drive id
    r"sources/[a-z0-9][a-z0-9_-]*/libraries/[0-9a-f]{32}\.sqlite(-wal|-shm|-journal)?",
    rf"workspace/{_JOB}/[^/]+",  # flat: one sanitised name per download, never a key's folders
)]


def misplaced(state: Path) -> list[str]:
    """Files and symlinks in the state directory that are not where they belong (temp
    files included: after a job none may remain)."""
    out = []
    for path in state.rglob("*"):
        rel = path.relative_to(state).as_posix()
        if path.is_symlink() or (path.is_file() and not any(p.fullmatch(rel) for p in STATE_LAYOUT)):
            out.append(rel)
    return out


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # audit event -> positions of the paths it writes
    "os.rename": (0, 1), "os.link": (1,), "os.symlink": (1,), "os.mkdir": (0,), "os.remove": (0,),
    "os.rmdir": (0,), "os.truncate": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "shutil.rmtree": (0,),
    "shutil.move": (1,), "shutil.copyfile": (1,), "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,),
    "os.chmod": (0,), "os.utime": (0,),
}


class WriteWatch:
    """Every path this process writes while armed, as an audit hook sees it. An audit
    hook cannot be removed, so one is installed per process and does nothing unarmed."""

    _armed: "WriteWatch | None" = None
    _installed = False
    _lock = threading.Lock()

    def __init__(self):
        self.writes: list[tuple[str, str]] = []  # (event, real path)

    def __enter__(self) -> "WriteWatch":
        with WriteWatch._lock:
            if not WriteWatch._installed:
                sys.addaudithook(WriteWatch._hook)
                WriteWatch._installed = True
            WriteWatch._armed = self
        return self

    def __exit__(self, *exc) -> None:
        WriteWatch._armed = None

    @staticmethod
    def _hook(event: str, args) -> None:
        watch = WriteWatch._armed
        if watch is None:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            paths = [path] if writing else []
        elif event in _PATH_EVENTS:
            paths = [args[i] for i in _PATH_EVENTS[event] if i < len(args)]
        elif event == "sqlite3.connect":
            paths = [args[0]]
        else:
            return
        for path in paths:
            if isinstance(path, int) or path is None or path in (":memory:", b":memory:", ""):
                continue  # by descriptor: the open that made it was seen
            if path in (os.devnull, os.fsencode(os.devnull)):
                continue  # subprocess's stand-in for a closed stream (ctypes asks ldconfig for libmagic)
            try:
                text = os.fsdecode(path)
                real = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(text))), os.path.basename(text))
            except (TypeError, ValueError):
                real = repr(path)
            watch.writes.append((event, real))

    def outside(self, root: Path) -> list[tuple[str, str]]:
        base = os.path.realpath(root)
        return [(e, p) for e, p in self.writes if p != base and not p.startswith(base + os.sep)]


class Snapshot:
    """Names, sizes and mtimes of everything under `root` except `skip` (a subtree)."""

    def __init__(self, root: Path, skip: Path):
        self.root, self.skip = root, skip
        self.entries = self._take()

    def _take(self) -> dict[str, tuple]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.skip.parent and self.skip.name in dirnames:
                dirnames.remove(self.skip.name)
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st_ = os.lstat(path)
                out[os.path.relpath(path, self.root)] = (st_.st_mode, st_.st_size if not os.path.isdir(path) else 0,
                                                         st_.st_mtime_ns if not os.path.isdir(path) else 0)
        return out

    def changes(self) -> list[str]:
        now = self._take()
        return sorted(k for k in set(now) | set(self.entries) if now.get(k) != self.entries.get(k))


def temp_listing() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def strays(before: set[str], names: list[str]) -> list[str]:
    """New entries of the temp directory named after a piece of a generated name (pieces
    of 8 characters or more: other processes on the machine make temp entries too)."""
    pieces = {p for n in names for p in re.split(r"[/\\]", n) if len(p) >= 8}
    return sorted(e for e in temp_listing() - before if any(p in e for p in pieces))


# -- what the campaign generates --------------------------------------------------------------

# characters a name may carry: every Unicode scalar value UTF-8 can encode (no lone
# surrogates: no S3 key or JSON string from a real service holds one)
ANY_CHAR = st.characters(codec="utf-8")
LOOKALIKES = [
    "\u2215", "\u2044", "\uff0f", "\u29f8", "\u2024", "\uff0e", "\u0430", "\u0435", "\u200b", "\u200d", "\ufeff",
    "\u202e", "\u2028", "\u00a0", "\u0301", "\ufffd", "\ufffe", "\uffff", "\U0001f600", "\U0010ffff", "\u00e9",
    "e\u0301", "\uff46\uff55\uff4c\uff4c",
]
SPECIAL = [
    "", ".", "..", "...", " ", "~", "%", "%2F", "%2f", "%2e%2e", "%00", "%25", "%%", "+", "?", "#", "&", "=", ";",
    "a?b#c", "$folder$", "_$folder$", "CON", "nul", "\\", "..\\..", "\x00", "\x01", "\x1f", "\x7f", "\t", "\r",
    "\x85", ".git", "~$lock.docx", "file:", "s3:", "//", "a b", " trailing ", "-rf", "*", "[x]",
]


def segments(chars=ANY_CHAR):
    return st.one_of(
        st.sampled_from(SPECIAL),
        st.text(chars, max_size=12),
        st.lists(st.sampled_from(LOOKALIKES + list("./%\\ \x00")), min_size=1, max_size=6).map("".join),
    )


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def long_names(chars=ANY_CHAR, limit: int = 1100):
    """Names near and past the S3 key limit (1,024 bytes), in one- to four-byte characters."""
    return st.builds(lambda head, unit, n: _cut(head + unit * n, limit), st.text(chars, max_size=8),
                     st.sampled_from(["x", "\u00e9", "\u20ac", "\U0001f600", "a/", "../", "%2"]),
                     st.integers(100, 1100))


def s3_keys():
    """S3 keys: any encodable text up to ~1,100 bytes, mostly in segments built to hurt.

    '\\n' is left out: moto's server cannot store a key holding one (real S3 can)."""
    chars = st.characters(codec="utf-8", exclude_characters="\n")
    key = st.one_of(
        st.lists(segments(chars), min_size=1, max_size=8).map("/".join),
        st.text(chars, min_size=1, max_size=40),
        long_names(chars),
    )
    return key.filter(lambda k: 0 < len(k.encode("utf-8")) <= 1100)


def sp_names():
    """SharePoint item names as a hostile Graph could send them (any JSON string that is
    valid Unicode), up to 300 characters."""
    return st.one_of(segments(), st.sampled_from(LOOKALIKES), st.text(ANY_CHAR, max_size=30),
                     long_names(limit=900).map(lambda n: n[:300]))
