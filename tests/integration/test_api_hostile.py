"""Hostile clients against the daemon's API, as a process: slow-drip connections, one
address hogging connection slots, malformed Content-Length, DNS-rebinding Host headers.
Whatever they do, a normal client keeps getting answers and every answer is JSON."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.helpers import wait_for
from tests.integration.test_api_support import Client, api_setup, read_all  # noqa: F401 (fixture)

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def address(d) -> tuple[str, int]:
    host, port = d.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


class Drip:
    """Connections that each send one byte of a request head every `every` seconds (never
    the blank line that would end it), from `sources` loopback addresses, reconnecting
    whenever the server drops them. Records how long the server let each one live, and
    how many it refused at once with 503."""

    def __init__(self, target: tuple[str, int], count: int, sources: list[str], every: float = 1.0):
        self.target, self.count, self.sources, self.every = target, count, sources, every
        self.stop = threading.Event()
        self.lifetimes: list[float] = []  # seconds from connect to the server dropping it
        self.refused = 0
        self.opened = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._thread.join(timeout=30)

    def _connect(self, n: int) -> dict:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((self.sources[n % len(self.sources)], 0))
        try:
            sock.connect(self.target)
        except BlockingIOError:
            pass
        self.opened += 1
        return {"sock": sock, "opened": time.monotonic(), "sent": 0, "next": time.monotonic()}

    def _dropped(self, conn: dict) -> bool:
        """Whether the server answered or closed (looked at without waiting)."""
        try:
            data = conn["sock"].recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 503 "):
            self.refused += 1
        else:
            self.lifetimes.append(time.monotonic() - conn["opened"])
        return True

    def _drip(self, conn: dict) -> None:
        if time.monotonic() < conn["next"]:
            return
        head = REQUEST[:-4]
        try:
            conn["sock"].send(head[conn["sent"] % len(head):][:1])
            conn["sent"] += 1
            conn["next"] = time.monotonic() + self.every
        except (BlockingIOError, OSError):
            pass  # not connected yet, or reset: _dropped sees it

    def _run(self) -> None:
        conns = [self._connect(n) for n in range(self.count)]
        while not self.stop.is_set():
            for n, conn in enumerate(conns):
                if self._dropped(conn):
                    conn["sock"].close()
                    conns[n] = self._connect(n)
                else:
                    self._drip(conn)
            self.stop.wait(0.05)  # the attacker's pace, not a wait for anything
        for conn in conns:
            conn["sock"].close()


def poll_steadily(client: Client, seconds: float) -> list[int]:
    """GET /healthz for `seconds`, each on a new connection (a kept-alive one would hold
    the slot it got before the attack); the statuses."""
    statuses, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses.append(client.get("/healthz").status)
        client.close()
        time.sleep(0.1)  # a poller's pace, not a wait for anything
    return statuses


@pytest.mark.slow
def test_slow_drip_from_many_addresses_cannot_lock_out_normal_clients(api_setup):
    """256 connections from 8 addresses, each dripping a header byte at a time (issue 14 #5):
    every slot can be taken, yet the normal client is answered throughout, and each drip
    connection is dropped once its head has had its whole deadline."""
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    client = setup.client(d)
    with Drip(address(d), 256, [f"127.0.0.{10 + i}" for i in range(8)], every=1.0) as drip:
        wait_for(lambda: drip.opened >= 256, message="the attack to open its connections")
        statuses = poll_steadily(client, 13.0)  # longer than a request's deadline (10 s)
    assert statuses and set(statuses) == {200}, statuses
    assert drip.lifetimes, "no drip connection was ever dropped"
    assert max(drip.lifetimes) < 10.0 + 5.0, max(drip.lifetimes)  # the head deadline, plus slack for a busy machine
    assert d.stop() == 0


@pytest.mark.slow
def test_one_address_holds_only_a_small_share_of_the_slots(api_setup):
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    client = setup.client(d)
    with Drip(address(d), 256, ["127.0.0.2"], every=1.0) as drip:
        wait_for(lambda: drip.refused >= 256 - 32, timeout=30,
                 message="the address's connections past its share to be refused")
        statuses = poll_steadily(client, 2.0)
    assert set(statuses) == {200}, statuses
    assert d.stop() == 0


@pytest.mark.parametrize("value", [b"\xb2", b"\xc2\xb2", b"\xb9", b"-1", b"1e3", b"0x10", b"+5", b"12 34", b"1_000"])
def test_content_length_must_be_ascii_digits(api_setup, value):
    """`Content-Length: ²` passed `isdigit()` and crashed the connection (issue 14 #12)."""
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    with socket.create_connection(address(d), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + value + b"\r\n\r\n{}")
        reply = read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply[:300]
    assert b"Content-Type: application/json; charset=utf-8" in head and b'"error":"bad_request"' in body
    wait_for(lambda: any(e.get("event") == "http request" and e.get("status") == 400 and e.get("path") == "/ingest"
                         for e in d.log_events()), message="the access-log line")
    assert d.stop() == 0
    assert "Traceback" not in d.log_text()


def test_two_content_lengths_are_refused(api_setup):
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    with socket.create_connection(address(d), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\nContent-Length: 19\r\n\r\n{}")
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 400 ") and b'"error":"bad_request"' in reply and b"Content-Length" in reply
    assert d.stop() == 0


def test_host_header_guards_against_dns_rebinding(api_setup):
    """A page on evil.example whose name now resolves to 127.0.0.1 reaches the daemon with
    `Host: evil.example` (issue 14 #15): refused. Loopback names and the listen address pass."""
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    host, port = address(d)
    client = setup.client(d)
    for name in ("evil.example", "evil.example:%d" % port, "127.0.0.1.evil.example", "localhost.evil.example"):
        body = client.get("/healthz", headers={"Host": name}).error(400, "invalid_host")
        assert "allowed_hosts" in body["message"] and "evil" not in body["message"]
    client.get("/jobs", headers={"Host": "evil.example"}).error(400, "invalid_host")
    for name in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", "[::1]", f"[::1]:{port}",
                 "127.0.0.2"):
        assert client.get("/healthz", headers={"Host": name}).status == 200, name
    assert d.stop() == 0


def test_allowed_hosts_admits_the_names_listed(api_setup):
    setup = api_setup.write(http={"allowed_hosts": ["ingest.internal"]})
    d = setup.start(setup.daemon())
    client = setup.client(d)
    assert client.get("/healthz", headers={"Host": "ingest.internal:8765"}).status == 200
    assert client.get("/healthz", headers={"Host": "INGEST.internal"}).status == 200
    client.get("/healthz", headers={"Host": "other.internal"}).error(400, "invalid_host")
    assert client.get("/healthz", headers={"Host": "localhost"}).status == 200  # loopback names always
    assert d.stop() == 0
    setup.write(http={"allowed_hosts": ["*"]})
    d = setup.start(d)
    assert setup.client(d).get("/healthz", headers={"Host": "anything.example"}).status == 200
    assert d.stop() == 0


def test_console_log_prints_plain_statuses_for_every_answer(api_setup):
    """Issue 15 #5: the console format printed `status=<HTTPStatus.NOT_IMPLEMENTED: 501>`."""
    setup = api_setup.write()
    text = setup.config.read_text().replace('log_format = "json"', 'log_format = "console"')
    setup.config.write_text(text)
    d = setup.start(setup.daemon())
    client = setup.client(d)
    client.call("BREW", "/jobs").error(405)
    with socket.create_connection(address(d), timeout=10) as sock:
        sock.sendall(b"GET /jobs HTTP/9.9\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 505 ")
    assert d.stop() == 0
    log = d.log_text()
    assert "method=BREW path=/jobs status=405" in log and "status=505" in log
    assert "HTTPStatus" not in log and "Traceback" not in log
