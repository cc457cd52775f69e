"""Framing and parsing request heads: what is accepted, what is refused with which status."""

from __future__ import annotations

import time

import pytest

from ingestd.api.transport.parse import MAX_HEADER_BYTES, Malformed, head_end, parse


def head(text: bytes):
    buf = bytearray(text)
    end = head_end(buf, 0)
    assert end is not None
    return parse(bytes(buf[:end]))


def test_a_plain_request():
    h = head(b"GET /jobs?limit=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:  padded  \r\n\r\n")
    assert (h.method, h.target, h.version) == ("GET", "/jobs?limit=1", "HTTP/1.1")
    assert h.headers["X-A"] == "padded" and h.length is None and h.keep_alive and not h.expects_continue


@pytest.mark.parametrize("version, connection, keep", [
    ("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, Close", False),
    ("1.0", None, False), ("1.0", "keep-alive", True),
])
def test_keep_alive_follows_the_version_and_connection_header(version, connection, keep):
    extra = f"Connection: {connection}\r\n" if connection else ""
    assert head(f"GET / HTTP/{version}\r\n{extra}\r\n".encode()).keep_alive is keep


def test_bare_newlines_are_accepted():
    assert head(b"GET / HTTP/1.1\nHost: x\n\n").headers["Host"] == "x"


@pytest.mark.parametrize("raw, status", [
    (b"GET /jobs\r\n\r\n", 400),  # HTTP/0.9
    (b"GET /jobs HTTP/2.0\r\n\r\n", 505),
    (b"GET /jobs HTTP/1.x\r\n\r\n", 400),
    (b"GET  /jobs HTTP/1.1\r\n\r\n", 400),
    (b"G(T /jobs HTTP/1.1\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\r\n\r\n", 400),  # a TLS hello
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
    (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),  # obsolete line folding
    (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
])
def test_malformed_heads_are_refused(raw, status):
    with pytest.raises(Malformed) as exc:
        head(raw)
    assert exc.value.status == status


def test_a_malformed_header_still_names_the_request_for_the_access_log():
    with pytest.raises(Malformed) as exc:
        head(b"POST /ingest HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    assert (exc.value.method, exc.value.target) == ("POST", "/ingest")


def test_limits_are_found_before_the_head_ends():
    with pytest.raises(Malformed) as exc:
        head_end(bytearray(b"GET /" + b"a" * 9000), 0)
    assert exc.value.status == 414
    with pytest.raises(Malformed) as exc:
        head_end(bytearray(b"GET / HTTP/1.1\r\n" + b"X-A: " + b"y" * (MAX_HEADER_BYTES + 10)), 0)
    assert exc.value.status == 431
    assert head_end(bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n"), 0) is None


def test_expect_100_continue_is_noticed():
    assert head(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n").expects_continue


def test_a_head_dripped_a_byte_at_a_time_is_scanned_in_linear_time():
    """Each arrival resumes the scan where the last one stopped: 16 KiB one byte at a time
    must not cost 16 K scans of up to 16 KiB each."""
    text = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%04d: %s\r\n" % (i, b"v" * 40) for i in range(300)) + b"\r\n"
    buf, scanned, started = bytearray(), 0, time.process_time()
    for i in range(len(text)):
        buf += text[i:i + 1]
        end = head_end(buf, scanned)
        scanned = len(buf)
    assert end == len(text)
    assert time.process_time() - started < 2.0  # linear: ~15 K short scans; quadratic would be ~100 M bytes
