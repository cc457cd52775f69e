"""Reading a file's bytes once: copied (or only read) while its sha256 is computed, with
the first bytes kept for the pipeline to sniff the type from."""

from __future__ import annotations

import hashlib
import os
import threading

CHUNK = 1 << 20
HEAD = 8192
_local = threading.local()  # each enrich thread's copy buffer


def copy_hashing(src_fd: int, dst_fd: int | None, limit: int | None = None,
                 progress=None) -> tuple[str, int, bytes]:
    """Copy src to dst (or only read it, when `dst_fd` is None), returning (sha256 hex,
    size, first bytes for MIME sniffing). `progress(n)` hears of every chunk read, so a
    huge file shows movement while it is copied.

    Reads into one reused buffer per thread: a fresh 1 MiB bytes object per read costs
    an mmap, page faults and a munmap, and with several threads copying at once those
    serialise on the process's memory map and cost more than the copy. Raises
    ValueError once more than `limit` bytes have been read.
    """
    digest = hashlib.sha256()
    buf = _buffer()
    size = 0
    head = b""
    while True:
        n = os.readv(src_fd, [buf])
        if not n:
            break
        chunk = memoryview(buf)[:n]
        if not head:
            head = bytes(chunk[:HEAD])
        size += n
        if limit is not None and size > limit:
            raise ValueError(f"larger than the {limit}-byte limit")
        digest.update(chunk)
        while dst_fd is not None and chunk:
            chunk = chunk[os.write(dst_fd, chunk):]
        if progress is not None:
            progress(n)
    return digest.hexdigest(), size, head


def _buffer() -> bytearray:
    buf = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = bytearray(CHUNK)
    return buf
