"""A source's sync state (its connector's cursors) in cluster mode: immutable snapshots
in the blob store, and the database's pointer to the current one, moved only by the
holder of the source's newest fence. A holder that lost its source may still upload a
snapshot (an object nobody points at), but can never make it current.

Connectors keep their state in a directory (`JobContext.source_state`), as embedded. The
instance that runs a job first `restore`s that directory from the current snapshot when
its own copy is not the current one (another instance ran the source since), and
`publish`es it, packed, once the connector's `finish` has recorded the job. So the cursor
a takeover starts from is the last one a holder of the newest fence saved, whichever host
saved it. The marker file in the directory names the snapshot the copy was made from.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

from ingestd.cluster import leases
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.leases import Lease

MARKER = ".cluster-snapshot"  # in the state directory: the snapshot key it matches


def save(conn, blobs: BlobStore, lease: Lease, data: bytes) -> str:
    key = blobs.put_snapshot(lease.source, data)
    leases.save_state(conn, lease, key)  # LeaseLost: the pointer stays the new holder's
    return key


def load(conn, blobs: BlobStore, source: str) -> bytes | None:
    """The current snapshot, or None before the source's first saved state."""
    key, _fence = leases.state_key(conn, source)
    return None if key is None else blobs.get_snapshot(key)


def restore(conn, blobs: BlobStore, source: str, directory: Path) -> str | None:
    """Make `directory` the current snapshot's copy unless it is already; the key, or None
    when the source has none yet (the directory is then left as it is)."""
    key, _fence = leases.state_key(conn, source)
    if key is None or _marked(directory) == key:
        return key
    data = blobs.get_snapshot(key)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o750)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        tar.extractall(directory, filter="data")  # refuses links out, absolute and `..` names
    (directory / MARKER).write_text(key)
    return key


def publish(conn, blobs: BlobStore, lease: Lease, directory: Path) -> str | None:
    """Snapshot `directory` and point the source at it (fenced); None when there is none."""
    if not directory.is_dir():
        return None
    key = save(conn, blobs, lease, pack(directory))
    (directory / MARKER).write_text(key)
    return key


def pack(directory: Path) -> bytes:
    """The directory as a tar with fixed times and owners: the same state packs to the same
    bytes, so an unchanged cursor is the same snapshot object."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            if path.name == MARKER or path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(directory)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return out.getvalue()


def problem(key: str, data: bytes) -> str | None:
    """What is wrong with the snapshot stored under `key`, as a restore would meet it, or
    None: its bytes must hash to its name, and it must be a tar a restore extracts (no
    entry pointing outside the state directory)."""
    if hashlib.sha256(data).hexdigest() != key.rsplit("/", 1)[-1]:
        return "its bytes do not match its name (damaged or overwritten)"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                tarfile.data_filter(member, "/state")  # what `restore`'s filter would refuse
    except tarfile.FilterError as exc:
        return f"a restore would refuse it: {exc}"
    except (tarfile.TarError, EOFError) as exc:
        return f"it is not a readable snapshot: {exc}"
    return None


def _marked(directory: Path) -> str | None:
    try:
        return (directory / MARKER).read_text().strip()
    except OSError:
        return None
