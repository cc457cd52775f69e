"""Small file operations shared by core and plugins."""

from __future__ import annotations

import os
import stat


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    """Remove `path`; one already gone is what we wanted anyway."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_private(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a file holding a secret, which must be a regular file that only its
    owner may read or write (as ssh insists for keys). ValueError says what is wrong and
    the fix; OSError (not found, no permission) is the caller's to word."""
    # O_NONBLOCK: a FIFO planted at the path must not hang the daemon's start
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"permissions {stat.S_IMODE(st.st_mode):04o} are too open (it holds a secret): "
                             f"run chmod 600 {os.fspath(path)}, owned by the user ingestd runs as, or give it "
                             "to the service with LoadCredential=")
        if st.st_size > limit:
            raise ValueError(f"larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1)[:limit]
    finally:
        os.close(fd)
