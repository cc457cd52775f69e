"""What ingestd learns from a file's bytes beyond their hash: its MIME type. The pipeline
asks, once the bytes are stored (the store only stores).

The MIME type comes from the content (libmagic); the extension is only consulted when
the content says nothing more specific than "some bytes" or "some text".
"""

from __future__ import annotations

import mimetypes
import os
import threading
import weakref

from ingestd._lib import allocator
from ingestd.store.hashing import HEAD

_GENERIC = {"application/octet-stream", "text/plain", "inode/x-empty", "application/x-empty"}

_magic = None  # ingestd.store.libmagic once loaded: at the first file, not at start-up
_magic_tried = False


def libmagic():
    """The handle maker, or None where libmagic is not installed: then we run on
    extensions alone. Loaded on first use, so a command that sniffs nothing never pays
    for loading the library (and its database)."""
    global _magic, _magic_tried
    if not _magic_tried:
        try:  # libmagic is a system library
            from ingestd.store import libmagic as loaded
        except (ImportError, OSError):  # pragma: no cover - depends on the machine
            loaded = None
        _magic, _magic_tried = loaded, True
    return _magic

# A libmagic handle per thread, each replaced after MAGIC_REUSE classifications.
#
# Why replaced: glibc's regexec, which libmagic uses, adds a 2-4 KiB table to a compiled
# regex for every new state an input drives it into and never drops one. On varied input a
# handle kept ~2.3 MiB of them after 3,000 files and ~0.2 MiB more each time the files it
# had seen doubled: that was the daemon's only memory still growing after hours (heaptrack,
# docs/reliability.md, Load). Closing a handle now and then gives all of its tables back,
# and the new one rebuilds what it needs as it goes.
# Why per thread: one handle for the process serialised the enrich threads on its lock
# (28% of their wall time in a 20,000-file one-shot). The handles share one mapped copy of
# the magic database (ingestd/store/libmagic.py), so each costs only its own tables.
MAGIC_REUSE = 20_000


class _Detector:
    def __init__(self, reuse: int = MAGIC_REUSE):
        self.reuse = reuse
        self._local = threading.local()

    def get(self):
        maker = libmagic()
        if maker is None:
            return None
        local = self._local
        handle = getattr(local, "handle", None)
        if handle is None or local.uses >= self.reuse:
            if handle is not None:
                # Closed when this thread's caller lets go of it (freeing its tables); the
                # freed pages are then handed back, or they would stay in this thread's arena.
                weakref.finalize(handle, allocator.trim)
            handle = local.handle = maker.Handle()
            local.uses = 0
        local.uses += 1
        return handle


_detector = _Detector()


_TEXTUAL = {
    "application/json", "application/xml", "application/javascript", "application/x-yaml",
    "application/yaml", "application/toml", "application/x-sh", "image/svg+xml", "application/sql",
    "message/rfc822",  # an e-mail whose first part is HTML looks like HTML to libmagic
}
SNIFF = 2048  # libmagic's text tests cost grows with the buffer; 2 KiB decides as well as 8
# Formats that are zip archives inside: libmagic names them only when the member that
# says so comes first, and some writers (openpyxl) put it later, so "a zip" is refined
# by an extension naming one of these.
_ZIPPED = ("application/vnd.openxmlformats-officedocument.", "application/vnd.oasis.opendocument.",
           "application/vnd.ms-", "application/epub+zip", "application/java-archive")


def detect_mime(head: bytes, name: str) -> str:
    """MIME type from content, refined by the extension only where content cannot tell.

    For text, libmagic can say "text" but rarely which text (CSV, Markdown, JSON lines),
    and its text tests are the slow ones; so when the bytes are plainly text and the
    extension names a textual type, that type is used without asking libmagic.
    """
    by_name, _ = mimetypes.guess_type(name, strict=False)
    if not head:
        return "application/x-empty"
    if by_name and (by_name.startswith("text/") or by_name in _TEXTUAL) and _is_text(head):
        return by_name
    by_content = None
    det = _detector.get()
    if det is not None:
        try:
            by_content = det.from_buffer(head[:SNIFF])
        except Exception:  # libmagic gives up on odd input; the extension still can answer
            by_content = None
    if by_content == "application/zip" and by_name and by_name.startswith(_ZIPPED):
        return by_name
    if by_content and by_content not in _GENERIC:
        return by_content
    if by_name and by_content in (None, "application/octet-stream") and not by_name.startswith("text/"):
        return by_name
    return by_content or by_name or "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut off by the sniff window
    return True


def read_head(path: str | os.PathLike[str]) -> bytes:
    """The first bytes of a file, as many as the hashing copy hands `detect_mime`: for
    callers (extraction's corpus checks, the bench) that detect a file they did not copy."""
    with open(path, "rb") as fh:
        return fh.read(HEAD)
