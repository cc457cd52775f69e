"""Cluster mode: several ingestd instances sharing PostgreSQL (jobs, leases, the
catalogue, the change feed) and S3-compatible storage (blobs, sync-state snapshots).
Opt-in with a `[cluster]` table and the `ingestd[cluster]` extra; see docs/cluster.md.
Nothing here is imported unless the config asks for it."""
