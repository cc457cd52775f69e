"""SIGTERM of a cluster instance closes every PostgreSQL connection it holds (the API's,
the change-feed watcher's, the main loop's) before the process exits. The server tells:
a session the client ended with a Terminate message is counted as a normal disconnect,
one whose socket merely closed at process exit as `sessions_abandoned`."""

from __future__ import annotations

import threading

from tests.integration.test_api_support import Client
from tests.support.helpers import wait_for

from .nodes import put_all

OBJECTS = {"one.txt": b"one\n", "two.txt": b"two\n"}


def abandoned(conn, database: str) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT sessions_abandoned FROM pg_stat_database WHERE datname = %s",
                        (database,)).fetchone()[0]


def sessions(conn, instance: str) -> list[str]:
    rows = conn.execute("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name LIKE %s", (f"ingestd % {instance} %",)).fetchall()
    return sorted(r[0].rsplit(" ", 1)[1] for r in rows)


def test_sigterm_closes_the_instances_database_connections(cluster):
    put_all(cluster.moto, OBJECTS)
    cluster.http = True
    cluster.start("a")
    a = cluster.instances["a"]
    client = Client(a.base_url, timeout=60)
    wait_for(lambda: len(client.get("/documents").json["documents"]) == 2, timeout=120,
             message="the first job's documents")
    held = threading.Thread(target=lambda: Client(a.base_url, timeout=60).get("/changes?after=&wait=20"))
    held.start()  # a long-poll starts the feed watcher and its LISTENing connection
    wait_for(lambda: {"api", "feed"} <= set(sessions(cluster.conn, "a")), timeout=60,
             message="the API's and the feed watcher's connections")
    before = abandoned(cluster.conn, cluster.pg.name)

    assert a.stop(timeout=60) == 0
    held.join(30)
    wait_for(lambda: not sessions(cluster.conn, "a"), timeout=30, message="the server to end a's sessions")
    assert abandoned(cluster.conn, cluster.pg.name) == before, "a connection was left to the process exit"
    assert not [e for e in a.log_events() if e.get("level") in ("warning", "error")
                and "connection" in str(e).lower()]
