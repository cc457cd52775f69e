"""The instances of a cluster, each with a heartbeat row: what `ingestd cluster status`
lists, and how an operator tells a live instance from a gone one."""

from __future__ import annotations

import os
import socket

from ingestd._lib.version import VERSION


def beat(conn, instance_id: str, api_url: str | None = None) -> None:
    """Register (or refresh) this instance; a restarted instance keeps its row."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO instances (instance_id, version, host, pid, api_url) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (instance_id) DO UPDATE SET version = EXCLUDED.version, host = EXCLUDED.host, "
            "pid = EXCLUDED.pid, api_url = COALESCE(EXCLUDED.api_url, instances.api_url), heartbeat_at = now()",
            (instance_id, VERSION, socket.gethostname(), os.getpid(), api_url),
        )


def leave(conn, instance_id: str) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM instances WHERE instance_id = %s", (instance_id,))
