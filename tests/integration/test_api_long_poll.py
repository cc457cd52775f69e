"""Long-polls (`GET /changes?wait=`) against a real Daemon object in this process, where
the server's threads and held requests can be counted: a hundred waiting consumers hold
no thread and no compute slot, starve no one, and are all answered by one commit."""

from __future__ import annotations

import socket
import time

from ingestd.api.service import ApiServer
from ingestd.api.transport.state import Limits
from tests.integration.test_api_server import live  # noqa: F401 (a fixture)
from tests.integration.test_api_support import Client, read_response
from tests.support.helpers import wait_for

WAITERS = 100


def raw_get(host: str, port: int, path: str) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=60)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return sock


def test_a_hundred_waiting_consumers_hold_no_thread_and_starve_no_one(live):  # noqa: F811
    server = ApiServer(live.api, live.config.http, Limits(max_per_client=WAITERS + 20, max_connections=256))
    server.start()
    host, port = server.address.split(":")
    socks = []
    try:
        socks = [raw_get(host, int(port), "/changes?wait=30") for _ in range(WAITERS)]
        wait_for(lambda: server.server.held == WAITERS, timeout=30, message=f"{WAITERS} held long-polls")
        # threads are made only for requests being answered (at most max_queued + active at
        # once while they arrive), and none is kept by a waiting one
        threads, limits = server.server.pool.threads, server.state.limits
        assert threads <= limits.max_queued + limits.active_requests, f"{threads} threads for {WAITERS} long-polls"
        assert server.state.inflight == 0 and server.state.queued == 0, "a held request holds a slot or a thread"
        # the rest of the API is answered as usual meanwhile, each request at once
        client = Client(f"http://{server.address}", timeout=10)
        for _ in range(20):
            assert client.get("/healthz").status == 200
            assert client.get("/documents").status == 200
        assert server.server.held == WAITERS
        # one commit answers every one of them
        (live.app.state_dir.parent / "inbox" / "wake.txt").write_bytes(b"wake up\n")
        for sock in socks:
            head, body = read_response(sock.makefile("rb"))
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b'"type":"stored"' in body and b"wake.txt" in body
        assert server.server.held == 0
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_a_held_long_poll_whose_client_leaves_is_let_go(live):  # noqa: F811
    server = ApiServer(live.api, live.config.http)
    server.start()
    host, port = server.address.split(":")
    try:
        sock = raw_get(host, int(port), "/changes?wait=30")
        wait_for(lambda: server.server.held == 1, timeout=10, message="the long-poll to be held")
        sock.close()
        wait_for(lambda: server.server.held == 0 and server.server.connections == 0, timeout=10,
                 message="the held request to be dropped with its connection")
    finally:
        server.stop()


def test_a_commit_by_another_process_wakes_held_long_polls(live, tmp_path):  # noqa: F811
    """A one-shot `ingestd ingest` commits through its own connection: the daemon is not
    told, so while requests are held it looks (once a second) and answers them."""
    from ingestd.store.catalogue import Blob, Change, Store, doc_id_for

    server = ApiServer(live.api, live.config.http)
    server.start()
    host, port = server.address.split(":")
    sock = raw_get(host, int(port), "/changes?wait=30")
    try:
        wait_for(lambda: server.server.held == 1, timeout=10, message="the long-poll to be held")
        other = Store(live.app.state_dir)
        try:
            src = tmp_path / "other.txt"
            src.write_bytes(b"from another process\n")
            with open(src, "rb") as fh:
                stored = other.blobs.put_file(fh.fileno(), size_hint=21)
            blob = Blob(stored.sha256, stored.size, "text/plain")
            other.flush()
            other.commit([Change(doc_id=doc_id_for("inbox", "x"), source="inbox", origin_uri="file:///other.txt",
                                 blob=blob, job_id="job-elsewhere")])
        finally:
            other.close()
        started = time.monotonic()
        head, body = read_response(sock.makefile("rb"))
        assert head.startswith(b"HTTP/1.1 200 ") and b"job-elsewhere" in body
        assert time.monotonic() - started < 25, "answered by the wait running out, not by the poll"
    finally:
        sock.close()
        server.stop()
