"""The transport's file bodies (what `GET /documents/{id}/content` will stand on): streamed
from the open file, never read whole into memory, with ETag/If-None-Match → 304, one
`Range` → 206 (or 416), and HEAD. Served by the real transport on a loopback socket; the
only stand-in is the service, a function that answers every request with one file."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import threading
import tracemalloc

import pytest

from ingestd.api.transport.http import FileBody, Response
from ingestd.api.transport.pacer import Pacer
from ingestd.api.transport.server import bind
from ingestd.api.transport.state import Limits, ServerState
from tests.support.helpers import wait_for

ETAG = '"0123abcd"'


class Files:
    """A transport serving `path` for every request, remembering the files it handed out."""

    def __init__(self, path):
        self.path, self.opened, self.exchanges = path, [], []
        state = ServerState(Limits(), self.respond, self.exchanges.append, Pacer(0), logging.getLogger("test"))
        self.server = bind("127.0.0.1", 0, state)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]

    def respond(self, request) -> Response:
        fh = open(self.path, "rb")
        self.opened.append(fh)
        return Response(200, FileBody(fh, os.fstat(fh.fileno()).st_size, ETAG), {"X-Doc": "1"},
                        "application/octet-stream", "/file")

    def get(self, method: str = "GET", **headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, "/file", headers=headers)
        r = conn.getresponse()
        return conn, r

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(bytes(range(256)) * 4)  # 1,024 bytes
    files = Files(path)
    yield files, path.read_bytes()
    files.close()


def test_a_file_is_served_whole_with_its_length_and_etag(small):
    files, data = small
    conn, r = files.get()
    assert r.status == 200 and r.read() == data
    assert r.headers["Content-Length"] == "1024" and r.headers["ETag"] == ETAG
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["X-Doc"] == "1"
    conn.request("GET", "/file")  # the connection is kept for the next request
    assert conn.getresponse().read() == data
    conn.close()
    wait_for(lambda: all(fh.closed for fh in files.opened), message="every file to be closed")
    assert [x.status for x in files.exchanges] == [200, 200] and files.exchanges[0].route == "/file"


@pytest.mark.parametrize("condition", [ETAG, f"W/{ETAG}", '"other", ' + ETAG, "*"])
def test_if_none_match_answers_304_without_a_body(small, condition):
    files, _ = small
    conn, r = files.get(**{"If-None-Match": condition})
    assert r.status == 304 and r.read() == b"" and r.headers["ETag"] == ETAG
    assert "Content-Length" not in r.headers
    conn.request("GET", "/file")  # nothing was left unread on the connection
    assert conn.getresponse().status == 200
    conn.close()
    wait_for(lambda: all(fh.closed for fh in files.opened), message="every file to be closed")


def test_a_different_etag_gets_the_file(small):
    files, data = small
    _, r = files.get(**{"If-None-Match": '"stale"'})
    assert r.status == 200 and r.read() == data


@pytest.mark.parametrize("header, first, last", [
    ("bytes=2-5", 2, 5), ("bytes=1000-", 1000, 1023), ("bytes=-24", 1000, 1023), ("bytes=0-99999", 0, 1023),
    ("bytes=1023-1023", 1023, 1023),
])
def test_one_range_is_206_with_content_range(small, header, first, last):
    files, data = small
    conn, r = files.get(Range=header)
    assert r.status == 206 and r.read() == data[first:last + 1]
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/1024"
    assert r.headers["Content-Length"] == str(last - first + 1)
    conn.close()


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_outside_the_file_is_416(small, header):
    files, _ = small
    _, r = files.get(Range=header)
    assert r.status == 416 and r.headers["Content-Range"] == "bytes */1024"
    assert b'"range_not_satisfiable"' in r.read()
    wait_for(lambda: all(fh.closed for fh in files.opened), message="every file to be closed")


@pytest.mark.parametrize("headers", [
    {"Range": "bytes=0-1,5-6"}, {"Range": "items=0-1"}, {"Range": "bytes=abc"}, {"Range": "bytes=9-2"},
    {"Range": "bytes=0-1", "If-Range": '"older"'},
])
def test_ranges_not_served_get_the_whole_file(small, headers):
    files, data = small
    _, r = files.get(**headers)
    assert r.status == 200 and r.read() == data


def test_head_sends_the_headers_of_get_and_no_body(small):
    files, _ = small
    conn, r = files.get("HEAD")
    assert r.status == 200 and r.read() == b"" and r.headers["Content-Length"] == "1024"
    assert r.headers["ETag"] == ETAG
    conn.request("HEAD", "/file", headers={"Range": "bytes=0-9"})
    r = conn.getresponse()
    assert r.status == 206 and r.read() == b"" and r.headers["Content-Range"] == "bytes 0-9/1024"
    conn.request("GET", "/file")  # the connection is still in step
    assert conn.getresponse().status == 200
    conn.close()
    wait_for(lambda: all(fh.closed for fh in files.opened), message="every file to be closed")


def test_a_large_file_is_streamed_not_read_into_memory(tmp_path):
    path = tmp_path / "large.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(64):
            fh.write(block)
    expected = hashlib.sha256(block * 64).hexdigest()
    files = Files(path)
    try:
        tracemalloc.start()
        try:
            sock = socket.create_connection(("127.0.0.1", files.port), timeout=30)
            sock.sendall(b"GET /file HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            digest, head, rest = hashlib.sha256(), b"", b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            head, _, rest = head.partition(b"\r\n\r\n")
            digest.update(rest)
            received = len(rest)
            while chunk := sock.recv(1 << 16):
                digest.update(chunk)
                received += len(chunk)
            sock.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        files.close()
    assert b"Content-Length: 67108864" in head and received == 64 << 20
    assert digest.hexdigest() == expected
    assert peak < 8 << 20, f"{peak} bytes allocated at peak while sending 64 MiB"
