"""Framing and parsing a request head from bytes the accepting loop has buffered.

Strict where leniency has been exploited elsewhere (request smuggling, header folding,
`Content-Length: ²` passing `str.isdigit`): one Content-Length of ASCII digits, no
Transfer-Encoding, header names that are tokens, no folded lines. Whatever is wrong
raises `Malformed` with the status and code the client gets; the connection then closes,
since what follows in its stream can no longer be trusted to start a request.
"""

from __future__ import annotations

import http.client
import io
import re
from dataclasses import dataclass
from email.message import Message

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100

_END = re.compile(rb"\n\r?\n")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])\r?")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\r?")
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes '²' and '٣'


class Malformed(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.method: str | None = None  # known when the request line could be read (for the access log)
        self.target: str | None = None


@dataclass
class Head:
    method: str
    target: str
    version: str
    headers: Message
    length: int | None  # Content-Length, None when absent
    keep_alive: bool
    expects_continue: bool


def skip_blank_lines(buf: bytearray) -> None:
    """A client may send CRLFs between requests (RFC 9112 §2.2): drop them."""
    i = 0
    while i < len(buf) and buf[i] in (0x0D, 0x0A):
        i += 1
    if i:
        del buf[:i]


def head_end(buf: bytearray, scanned: int) -> int | None:
    """Where the head in `buf` ends (just past its blank line), or None if it has not all
    arrived. `scanned` is how far earlier calls looked, so a head dripped in one byte at a
    time costs linear, not quadratic, work. Raises `Malformed` once a limit is passed."""
    match = _END.search(buf, max(0, scanned - 2))
    first_line = buf.find(b"\n", 0, MAX_REQUEST_LINE + 2)
    if first_line < 0 and len(buf) > MAX_REQUEST_LINE + 1:
        raise Malformed(414, "uri_too_long", "the request line is too long")
    end = match.end() if match else None
    if (end or len(buf)) - max(first_line, 0) > MAX_HEADER_BYTES + 4:
        raise Malformed(431, "headers_too_large", f"request headers are larger than {MAX_HEADER_BYTES} bytes")
    return end


def parse(head: bytes) -> Head:
    lines = head.split(b"\n")[:-2]  # the head ends with a blank line
    method, target, version = _request_line(lines[0])
    try:
        return _rest(method, target, version, lines[1:])
    except Malformed as exc:
        exc.method, exc.target = method, target
        raise


def _rest(method: str, target: str, version: str, lines: list[bytes]) -> Head:
    headers = _headers(lines)
    length = _content_length(headers)
    if headers.get("Transfer-Encoding") is not None:
        raise Malformed(411, "length_required", "send the body with a Content-Length, not chunked")
    if len(headers.get_all("Host") or ()) > 1:
        raise Malformed(400, "bad_request", "more than one Host header")
    tokens = {t.strip().lower() for t in (headers.get("Connection") or "").split(",")}
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    expects = version == "HTTP/1.1" and (headers.get("Expect") or "").strip().lower() == "100-continue"
    return Head(method, target, version, headers, length, keep_alive, expects)


def _request_line(line: bytes) -> tuple[str, str, str]:
    if len(line) > MAX_REQUEST_LINE:
        raise Malformed(414, "uri_too_long", "the request line is too long")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        parts = line.rstrip(b"\r").split(b" ")
        if len(parts) == 2 and re.fullmatch(_TOKEN, parts[0]):
            raise Malformed(400, "bad_request", "HTTP/0.9 requests are not supported")
        raise Malformed(400, "bad_request", "malformed request line")
    method, target, major, minor = (g.decode("latin-1") for g in match.groups())
    if (major, minor) not in (("1", "0"), ("1", "1")):
        raise Malformed(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served")
    return method, target, f"HTTP/{major}.{minor}"


def _headers(lines: list[bytes]) -> Message:
    if len(lines) > MAX_HEADERS:
        raise Malformed(431, "headers_too_large", f"more than {MAX_HEADERS} request headers")
    clean = []
    for line in lines:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            # folded lines, spaces before the colon, control bytes: each has been used to
            # make two parsers disagree about where a request ends
            raise Malformed(400, "bad_request", "malformed header line")
        clean.append(match.group(1) + b": " + match.group(2))  # without the whitespace around the value
    return http.client.parse_headers(io.BytesIO(b"\r\n".join([*clean, b"", b""])))


def _content_length(headers: Message) -> int | None:
    values = headers.get_all("Content-Length") or []
    if not values:
        return None
    if len(values) > 1:
        raise Malformed(400, "bad_request", "more than one Content-Length header")
    if _DIGITS.fullmatch(values[0]) is None:
        raise Malformed(400, "bad_request", "Content-Length is not a number of ASCII digits")
    return int(values[0])
