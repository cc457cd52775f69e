"""A source's sync state (its connector's cursors) in cluster mode: immutable snapshots
in the blob store, and the database's pointer to the current one, moved only by the
holder of the source's newest fence. A holder that lost its source may still upload a
snapshot (an object nobody points at), but can never make it current."""

from __future__ import annotations

from ingestd.cluster import leases
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.leases import Lease


def save(conn, blobs: BlobStore, lease: Lease, data: bytes) -> str:
    key = blobs.put_snapshot(lease.source, data)
    leases.save_state(conn, lease, key)  # LeaseLost: the pointer stays the new holder's
    return key


def load(conn, blobs: BlobStore, source: str) -> bytes | None:
    """The current snapshot, or None before the source's first saved state."""
    key, _fence = leases.state_key(conn, source)
    return None if key is None else blobs.get_snapshot(key)
