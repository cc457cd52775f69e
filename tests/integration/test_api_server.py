"""The API server's own behaviour, over real HTTP against a real Daemon object run in
this process, where a check can be made to fail or a handler made to block on purpose:
health 503, graceful stop with a request in flight, idle and stalling clients, connection
limits and their fair share, internal errors, refusing new jobs while stopping."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from ingestd.api.service import ApiServer
from ingestd.api.transport.state import Limits
from ingestd.app import load_config
from ingestd.daemon import Daemon
from ingestd.plugin.manager import Plugins
from tests.support.helpers import wait_for
from tests.integration.test_api_support import Client, Setup, read_all, read_response


@pytest.fixture
def live(tmp_path):
    setup = Setup(tmp_path).write()
    plugins = Plugins().load()
    d = Daemon(load_config(setup.config, plugins), plugins, setup.config)
    d.start()
    yield d
    d.shutdown()


def client_for(server: ApiServer) -> Client:
    return Client(f"http://{server.address}")


@contextlib.contextmanager
def own_server(live, **limits):
    """A second API server on the live daemon, with its own limits; yields it, host, port."""
    server = ApiServer(live.api, live.config.http, Limits(**limits))
    server.start()
    host, port = server.address.split(":")
    try:
        yield server, host, int(port)
    finally:
        server.stop()


def blocking_health(d: Daemon):
    """Make /healthz block until `release` is set; `entered` says a request is inside."""
    entered, release = threading.Event(), threading.Event()
    real = d.api.health

    def slow():
        entered.set()
        release.wait(20)
        return real()

    d.api.health = slow
    return entered, release


def test_healthz_is_503_and_names_the_failing_check(live):
    client = client_for(live.http)
    assert client.get("/healthz").status == 200
    live.schedule.stop()
    body = client.get("/healthz").error(503, "unhealthy")
    assert body["status"] == "unhealthy" and body["failing"] == ["scheduler"] and "scheduler" in body["message"]
    assert body["checks"]["scheduler"]["ok"] is False and body["checks"]["workers"]["ok"] is True
    assert 'ingestd_health_check_ok{check="scheduler"} 0.0' in client.get("/metrics").data.decode()


def test_stop_lets_a_request_in_flight_finish(live):
    server = live.http
    entered, release = blocking_health(live)
    result = {}
    request = threading.Thread(target=lambda: result.update(r=client_for(server).get("/healthz")))
    request.start()
    assert entered.wait(10)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=0.5)
    assert stopper.is_alive(), "stop() returned while a request was still being answered"
    release.set()
    request.join(timeout=10)
    stopper.join(timeout=10)
    assert not stopper.is_alive() and result["r"].status == 200 and result["r"].json["status"] == "ok"
    assert result["r"].headers["Connection"] == "close"
    host, port = server.address.split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


def test_idle_and_stalling_clients_are_dropped_after_their_deadline(live):
    with own_server(live, idle_timeout=0.3, request_timeout=0.3) as (_, host, port):
        with socket.create_connection((host, port), timeout=10) as stalled:
            stalled.sendall(b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 40\r\n\r\n{\"source\"")
            reply = read_all(stalled)  # the server answers, then closes: no thread is held
        assert reply.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in reply
        assert b"Connection: close" in reply
        with socket.create_connection((host, port), timeout=10) as idle:
            assert read_all(idle) == b""  # closed by the server without a word


def test_a_full_server_evicts_a_waiting_connection_for_a_newcomer(live):
    """Connections that only wait (idle, or dripping a request) give way to a new one."""
    with own_server(live, max_connections=2) as (server, host, port):
        idle = [socket.create_connection((host, port), timeout=10) for _ in range(2)]
        try:
            wait_for(lambda: server.server.connections == 2, message="both connections to be taken in")
            assert client_for(server).get("/healthz").status == 200
            gone = wait_for(lambda: [s for s in idle if _closed(s)], message="a waiting connection to give way")
            assert gone == idle[:1]  # the longest-waiting one
            assert _get(idle[1]).startswith(b"HTTP/1.1 200 ")  # the other one still serves
        finally:
            for sock in idle:
                sock.close()


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (looked at without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10)


def test_connections_past_the_limit_get_503_when_every_slot_is_answering(live):
    entered, release = blocking_health(live)
    with own_server(live, max_connections=2) as (server, host, port):
        busy = [socket.create_connection((host, port), timeout=20) for _ in range(2)]
        try:
            for sock in busy:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert entered.wait(10)
            wait_for(lambda: server.state.inflight == 2, message="both requests to be taken up")
            extra = client_for(server).get("/jobs")
            extra.error(503, "overloaded")
            assert extra.headers["Retry-After"] == "1"
        finally:
            release.set()
            for sock in busy:
                sock.close()
        wait_for(lambda: client_for(server).get("/healthz").status == 200, message="slots to free up")


def test_one_address_holds_at_most_its_share_of_connections(live):
    with own_server(live, max_per_client=3) as (server, host, port):
        mine = [socket.create_connection((host, port), source_address=("127.0.0.2", 0), timeout=10)
                for _ in range(3)]
        try:
            with socket.create_connection((host, port), source_address=("127.0.0.2", 0), timeout=10) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert read_all(extra).startswith(b"HTTP/1.1 503 ")
            assert client_for(server).get("/healthz").status == 200  # another address still gets in
            for sock in mine:  # and the address's own connections still work
                assert _get(sock).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in mine:
                sock.close()


def test_an_internal_error_is_500_json_without_detail(live):
    def broken(**_):
        raise RuntimeError("db password hunter2 in a traceback")

    live.app.jobs.list = broken
    r = client_for(live.http).get("/jobs")
    body = r.error(500, "internal")
    assert "hunter2" not in r.data.decode() and "Traceback" not in r.data.decode()
    assert body["message"] == "internal error; see the daemon log"


def test_draining_refuses_new_jobs_but_still_answers_status(live):
    client = client_for(live.http)
    live.http.drain()
    client.post("/ingest", {"source": "inbox"}).error(503, "shutting_down")
    assert client.get("/jobs").status == 200 and client.get("/healthz").status == 200


def test_pacer_spaces_requests_after_a_short_burst(monkeypatch):
    """Clients beyond `max_requests_per_second` wait their turn, they are not refused."""
    from ingestd.api.transport import pacer as api

    clock = {"now": 100.0}
    monkeypatch.setattr(api.time, "monotonic", lambda: clock["now"])
    pacer = api.Pacer(rate=10)  # one request per 0.1 s, 0.25 s of burst
    waits = [pacer.reserve() - clock["now"] for _ in range(12)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # the burst allowance lets the first 3 through at once
    assert all(w > 0 for w in waits[3:]) and waits == sorted(waits)
    assert abs(waits[-1] - 0.85) < 1e-6  # the 12th waits until 11 intervals after the burst start
    assert api.Pacer(rate=0).reserve() == clock["now"]


def test_the_server_pins_the_allocator_for_its_threads(live, monkeypatch):
    """Without it, 100 polling clients made RSS creep under ingestion (see allocator.py)."""
    from ingestd._lib import allocator

    calls = []
    monkeypatch.setattr(allocator, "pin_malloc_thresholds", lambda: calls.append(True) or True)
    server = ApiServer(live.api, live.config.http)
    server.stop()
    assert calls == [True]


def _get(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One keep-alive GET on a raw socket; returns the whole response (headers and body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return b"".join(read_response(sock.makefile("rb")))


def test_idle_keep_alive_connections_hold_no_thread(live):
    """100 polling clients used to mean 100 threads for the daemon's life (docs/reliability.md)."""
    with own_server(live, max_per_client=64) as (server, host, port):
        socks = [socket.create_connection((host, port), timeout=10) for _ in range(40)]
        try:
            for sock in socks:
                assert _get(sock).startswith(b"HTTP/1.1 200 ")
            assert server.server.pool.threads <= 8, "idle connections are holding threads"
            for sock in socks:  # every one of them is still open and answers again
                assert _get(sock).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in socks:
                sock.close()


def test_pipelined_requests_are_all_answered_in_order(live):
    host, port = live.http.address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stream = sock.makefile("rb")
        statuses = [read_response(stream)[0].split(b" ", 2)[1] for _ in range(3)]
    assert statuses == [b"200", b"404", b"200"]


@pytest.mark.parametrize("stalling", [1, 10])
def test_clients_stalling_mid_request_hold_no_thread_and_hold_up_no_one(live, stalling):
    with own_server(live, request_timeout=30) as (server, host, port):
        stalled = [socket.create_connection((host, port), timeout=10) for _ in range(stalling)]
        try:
            for sock in stalled:
                sock.sendall(b"GET /heal")  # and nothing more, for now
            wait_for(lambda: all(c.started for c in server.server._parked) and len(server.server._parked) == stalling,
                     message="the stalled requests to be half-read")
            assert client_for(server).get("/healthz").status == 200
            assert server.server.pool.threads <= 1, "stalled requests are holding threads"
            for sock in stalled:
                sock.sendall(b"thz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # they finish, and are answered too
            assert all(read_response(sock.makefile("rb"))[0].startswith(b"HTTP/1.1 200 ") for sock in stalled)
        finally:
            for sock in stalled:
                sock.close()


def test_requests_waiting_for_the_cpu_wait_parked_not_on_threads(live):
    """When answers are what is slow, more threads would only hold more memory: past a few
    queued requests the rest wait without one, and every request is still answered."""
    server = live.http
    max_queued = server.state.limits.max_queued
    entered, release = blocking_health(live)
    host, port = server.address.split(":")
    socks = [socket.create_connection((host, int(port)), timeout=20) for _ in range(30)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert entered.wait(10)
        wait_for(lambda: server.state.queued == max_queued, message="the queue for a compute slot to fill")
        wait_for(lambda: len(server.server._due) == 30 - max_queued - 2, message="the rest to be held back")
        assert server.server.pool.threads <= max_queued + 2
        release.set()
        assert all(read_response(sock.makefile("rb"))[0].startswith(b"HTTP/1.1 200 ") for sock in socks)
    finally:
        release.set()
        for sock in socks:
            sock.close()


def test_a_connection_evicted_in_the_turn_its_client_left_does_not_stop_the_loop(live):
    """One select can report an accept that evicts a waiting connection and, after it, that
    connection's own close: the stale event must be skipped, not unregister a closed socket
    (that killed the HTTP thread under load: every later request timed out)."""
    with own_server(live, max_connections=1) as (server, host, port):
        loop = server.server
        stalled, go = threading.Event(), threading.Event()
        real = loop._dispatch_due

        def stall_once():
            if not stalled.is_set():
                stalled.set()
                go.wait(20)
            real()

        waiting = socket.create_connection((host, port), timeout=10)  # parked: it sends nothing
        wait_for(lambda: loop.connections == 1, message="the first connection to be parked")
        loop._dispatch_due = stall_once
        loop.wake_held()  # one turn, which the stall holds at its end
        loop._wake()
        assert stalled.wait(10)
        newcomer = socket.create_connection((host, port), timeout=10)  # ready first: the accept evicts
        waiting.close()  # then the evicted one's close, in the same select
        go.set()
        try:
            newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(newcomer.makefile("rb"))[0].startswith(b"HTTP/1.1 200 ")
        finally:
            newcomer.close()
        # the loop lives on: once the newcomer's slot is free, the next client is answered
        wait_for(lambda: client_for(server).get("/healthz").status == 200, message="the loop to answer again")
