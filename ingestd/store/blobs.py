"""The blob store: content-addressed files at `blobs/sha256/<2 hex>/<64 hex>`, written once
per distinct content.

It trusts nothing it did not just measure. An existing file at a blob's path stands in
for new bytes (dedup) only if its size is right: a power cut between a link and the
flush, or a planted file, leaves a short one, which is replaced atomically. A file a
connector hands over (`adopt`) is hashed here, whatever the connector says it holds.
`flush` makes every blob written so far durable, on the filesystem that holds the blobs,
before any record may name them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingestd._lib.atomic import fsync_dir, syncfs
from ingestd._lib.files import unlink_quietly
from ingestd.errors import Code, StoreError
from ingestd.store.hashing import CHUNK, HEAD, copy_hashing
from ingestd.store.space import Space

SMALL_FILE = 1 << 20  # read whole, hash, then write only if the content is new
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Stored:
    """Bytes now in the blob store, with the head the pipeline sniffs their type from."""

    sha256: str
    size: int
    head: bytes


def is_sha256(text: str) -> bool:
    return len(text) == 64 and HEX.issuperset(text)


def measure(path: Path, *, sha256: str | None = None, size: int | None = None) -> Stored:
    """The sha256, size and head of a file a connector handed over (`owned`), read
    without following a symlink. What the connector claimed (`sha256`, `size`) is checked
    against the bytes, never taken on its word: a contradicted claim is refused
    (`integrity`), in embedded and cluster mode alike."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        real, length, head = copy_hashing(fd, None)
    finally:
        os.close(fd)
    if (sha256 is not None and sha256 != real) or (size is not None and size != length):
        raise StoreError(f"the connector said sha256 {str(sha256)[:64]}, {size} bytes; the file it handed "
                         f"over has sha256 {real}, {length} bytes: not stored", Code.INTEGRITY)
    return Stored(real, length, head)


def syncfs_reports_errors(release: str | None = None) -> bool:
    """Before Linux 5.8 syncfs returned 0 even when writing a dirty page back failed, so
    it could not tell us the blobs were durable; there each blob is fsync'ed instead."""
    release = release or os.uname().release
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


class Blobs:
    def __init__(self, state_dir: Path, space: Space | None = None, *, per_file_sync: bool | None = None):
        self.root = state_dir / "blobs" / "sha256"
        self.tmp_dir = state_dir / "blobs" / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.space = space or Space(self.root)
        self._made_dirs: set[str] = set()
        self._proc_fd = _probe_tmpfile(self.tmp_dir)
        self._per_file = not syncfs_reports_errors() if per_file_sync is None else per_file_sync
        self._lock = threading.Lock()
        self._unflushed: list[Path] = []  # with per-file sync only

    def close(self) -> None:
        if self._proc_fd is not None:
            os.close(self._proc_fd)
            self._proc_fd = None

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def clean_temps(self) -> int:
        """Temp blobs left by a crash are garbage: their content was never committed."""
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            os.unlink(entry.path)
            removed += 1
        return removed

    # -- in ---------------------------------------------------------------------------

    def put_file(self, src_fd: int, *, limit: int | None = None, size_hint: int | None = None,
                 progress=None) -> Stored:
        """Copy an open file in while hashing it; dedupe by content. Small files are read
        whole first, so content already stored costs no write and claims no space; a big
        one tells `progress(n)` of every chunk as it goes."""
        if size_hint is not None and size_hint <= SMALL_FILE:
            data = _read_all(src_fd, limit, size_hint)
            sha = hashlib.sha256(data).hexdigest()
            if not self.holds(sha, len(data)):
                self.space.take(len(data))
                try:
                    with self._unnamed() as blob:
                        _write_all(blob.fd, data)
                        blob.name_as(sha, len(data))
                finally:
                    self.space.give_back(len(data))
            return Stored(sha, len(data), data[:HEAD])
        with self.space.claim(size_hint or 0), self._unnamed() as blob:
            sha, size, head = copy_hashing(src_fd, blob.fd, limit, progress)
            blob.name_as(sha, size)
        return Stored(sha, size, head)

    def adopt(self, path: Path, *, sha256: str | None = None, size: int | None = None) -> Stored:
        """Move a file a connector wrote into the workspace into the store, under the hash
        of what it holds. A claim (`sha256`, `size`) that the bytes contradict is refused:
        a record must never name one content for another."""
        stored = measure(path, sha256=sha256, size=size)
        if self.holds(stored.sha256, stored.size):
            unlink_quietly(path)
        else:
            self._place(str(path), stored.sha256, stored.size)
        return stored

    def existing(self, sha256: str, size: int | None) -> Stored:
        """A blob already in the store, for a document re-pointed without new bytes (a
        renamed remote item); `size` is what the records say it holds (None: no record
        names it). FileNotFoundError unless the store holds it, whole."""
        if not is_sha256(sha256) or size is None:
            raise FileNotFoundError(errno.ENOENT, "no such content in the store", sha256[:80])
        path = self.path(sha256)
        with open(path, "rb") as fh:
            length = os.fstat(fh.fileno()).st_size
            if size is not None and length != size:
                raise FileNotFoundError(errno.ENOENT, f"the stored copy is {length} bytes, not {size}", sha256)
            return Stored(sha256, length, fh.read(HEAD))

    def place(self, path: Path, sha256: str) -> Path:
        """Move a file whose sha256 core computed (extracted text, hashed by core's own
        worker) into the store; returns where it now is."""
        self._place(str(path), sha256, os.stat(path).st_size)
        return self.path(sha256)

    def holds(self, sha256: str, size: int) -> bool:
        """Whether a blob of this content may stand in for new bytes: one is there and it
        has the right size (checking the hash too would cost a read of every duplicate)."""
        try:
            return os.stat(self.path(sha256)).st_size == size
        except FileNotFoundError:
            return False

    def flush(self) -> None:
        """Make every blob written so far durable before records name them: one syncfs of
        the filesystem holding the blobs (which need not be the state dir's), or, where
        syncfs cannot report a failed write-back, an fsync per new blob and folder."""
        if not self._per_file:
            syncfs(self.root)
            return
        with self._lock:
            paths, self._unflushed = self._unflushed, []
        for path in paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in {p.parent for p in paths}:
            fsync_dir(folder)

    # -- placing ----------------------------------------------------------------------

    def _unnamed(self) -> "_NewBlob":
        return _NewBlob(self)

    def _temp(self) -> tuple[int, str]:
        name = f"{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()}"
        path = str(self.tmp_dir / name)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640), path

    def _prefix_dir(self, sha256: str) -> Path:
        final = self.path(sha256)
        prefix = sha256[:2]
        if prefix not in self._made_dirs:
            final.parent.mkdir(exist_ok=True)
            self._made_dirs.add(prefix)
        return final

    def _place(self, tmp: str, sha256: str, size: int) -> None:
        """Rename a named file into place, over whatever wrong-sized file is there."""
        final = self._prefix_dir(sha256)
        if self.holds(sha256, size):
            unlink_quietly(tmp)
            return
        try:
            os.replace(tmp, final)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the blobs live on another filesystem: copy
                raise
            self._copy_in(tmp, sha256, size)
            unlink_quietly(tmp)
            return
        self._written(final)

    def _copy_in(self, path: str, sha256: str, size: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self.space.claim(size), self._unnamed() as blob:
                real, length, _ = copy_hashing(fd, blob.fd)
                if (real, length) != (sha256, size):
                    raise StoreError("the file changed while it was moved into the store", Code.INTEGRITY)
                blob.name_as(real, length)
        finally:
            os.close(fd)

    def _written(self, final: Path) -> None:
        if self._per_file:
            with self._lock:
                self._unflushed.append(final)

    # -- for `ingestd verify` ---------------------------------------------------------

    def files(self) -> Iterator[tuple[str, Path]]:
        """Every file under the blob root, as (name, path), whatever its name."""
        for prefix in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not prefix.is_dir(follow_symlinks=False):
                yield prefix.name, Path(prefix.path)
                continue
            for entry in sorted(os.scandir(prefix.path), key=lambda e: e.name):
                yield entry.name, Path(entry.path)

    def measure(self, path: Path) -> tuple[str, int]:
        """(sha256, size) of a blob file's bytes, read without following symlinks."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            sha, size, _ = copy_hashing(fd, None)
        finally:
            os.close(fd)
        return sha, size


class _NewBlob:
    """A blob being written. It has no name until its hash is known: an O_TMPFILE inode
    linked into place, so a crash leaves nothing to clean and parallel writers do not
    queue on one temp directory. Where that is unavailable (no O_TMPFILE, no /proc), a
    named temp file and a rename do the same job."""

    def __init__(self, blobs: Blobs):
        self.blobs = blobs
        self.fd = -1
        self.tmp: str | None = None

    def __enter__(self) -> "_NewBlob":
        if self.blobs._proc_fd is not None:
            self.fd = os.open(self.blobs.tmp_dir, os.O_TMPFILE | os.O_WRONLY, 0o640)
        else:
            self.fd, self.tmp = self.blobs._temp()
        return self

    def name_as(self, sha256: str, size: int) -> None:
        if self.tmp is not None:
            os.close(self.fd)
            self.fd = -1
            self.blobs._place(self.tmp, sha256, size)
            self.tmp = None
            return
        final = self.blobs._prefix_dir(sha256)
        try:
            self._link(final)
        except FileExistsError:
            if self.blobs.holds(sha256, size):
                return  # the same content, written by another job meanwhile
            # a wrong-sized file holds the name: link beside it, then rename over it
            beside = final.with_name(f".{sha256}.{os.urandom(4).hex()}.tmp")
            self._link(beside)
            os.replace(beside, final)
        self.blobs._written(final)

    def _link(self, target: Path) -> None:
        # linkat(AT_SYMLINK_FOLLOW) through /proc/self/fd names the unnamed inode
        os.link(str(self.fd), target, src_dir_fd=self.blobs._proc_fd, follow_symlinks=True)

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.tmp is not None:
            unlink_quietly(self.tmp)


def _probe_tmpfile(directory: Path) -> int | None:
    """The /proc/self/fd directory fd when unnamed temp files can be linked here, else None."""
    if not hasattr(os, "O_TMPFILE"):
        return None
    try:
        proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    probe = directory / f".probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
        try:
            os.link(str(fd), probe, src_dir_fd=proc, follow_symlinks=True)
        finally:
            os.close(fd)
        os.unlink(probe)
        return proc
    except OSError:
        os.close(proc)
        return None


def _read_all(fd: int, limit: int | None, expected: int) -> bytes:
    """Read to the end. Asking for one byte more than expected usually gets the whole
    file in one read (a short read of a regular file is its end; a file that grew
    meanwhile just takes more reads, and the caller's re-check then refuses it)."""
    parts = []
    size = 0
    want = expected + 1
    while True:
        chunk = os.read(fd, want)
        want = CHUNK
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ValueError(f"larger than the {limit}-byte limit")
        parts.append(chunk)
        if size == expected and len(parts) == 1:
            return chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
