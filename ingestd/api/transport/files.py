"""Which part of a file body to send, given the request's conditionals (RFC 9110 §13, §14):
`If-None-Match` → 304, one `Range: bytes=…` → 206 or 416, anything else → the whole file;
and sending it (`send`).

Several ranges in one request are answered with the whole file (which the RFC allows):
multipart/byteranges costs complexity no client of this API needs."""

from __future__ import annotations

import io
import re
import socket
from dataclasses import dataclass, field
from email.message import Message

from ingestd.api.transport.http import FileBody

BLOCK = 1 << 20  # a body without a file descriptor (a blob on S3) is copied in blocks this big
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


@dataclass
class Plan:
    status: int
    offset: int = 0
    count: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def plan(body: FileBody, headers: Message) -> Plan:
    extra = {"Accept-Ranges": "bytes"}
    if body.etag:
        extra["ETag"] = body.etag
    if body.etag and _matches(headers.get("If-None-Match"), body.etag):
        return Plan(304, headers=extra)
    wanted = _range(headers, body)
    if wanted is None:
        return Plan(200, 0, body.size, extra)
    first, last = wanted
    if first >= body.size:
        return Plan(416, headers={**extra, "Content-Range": f"bytes */{body.size}"})
    last = min(last, body.size - 1)
    return Plan(206, first, last - first + 1, {**extra, "Content-Range": f"bytes {first}-{last}/{body.size}"})


def _matches(condition: str | None, etag: str) -> bool:
    if condition is None:
        return False
    if condition.strip() == "*":
        return True
    return any(_strong(tag) == _strong(etag) for tag in condition.split(","))


def _strong(tag: str) -> str:
    """If-None-Match compares weakly: `W/"x"` matches `"x"`."""
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _range(headers: Message, body: FileBody) -> tuple[int, int] | None:
    """(first, last) asked for, or None to send everything: no Range, one we do not
    serve (several ranges, another unit, a malformed one), or an If-Range that no longer
    matches. An unsatisfiable range comes back as first ≥ size."""
    value = headers.get("Range")
    if value is None:
        return None
    if_range = headers.get("If-Range")
    if if_range is not None and (body.etag is None or if_range.strip() != body.etag):
        return None  # the client's copy is another version: send the current one whole
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:  # the last `end` bytes
        suffix = int(end)
        return (max(body.size - suffix, 0), body.size - 1) if suffix else (body.size, body.size)
    first, last = int(start), int(end) if end else body.size - 1
    return None if end and last < first else (first, last)  # a backwards range is ignored, not refused


def send(sock: socket.socket, file, offset: int, count: int) -> int:
    """Send `count` bytes of `file` from `offset`; how many were sent. A file on disk goes
    by `sendfile`; one without a descriptor (a blob streamed from S3) is copied in
    `BLOCK`s, where `socket.sendfile`'s own fallback would use 8 KiB reads and sends."""
    try:
        file.fileno()
    except (io.UnsupportedOperation, AttributeError, OSError):
        return _copy(sock, file, offset, count)
    return sock.sendfile(file, offset, count)


def _copy(sock: socket.socket, file, offset: int, count: int) -> int:
    file.seek(offset)
    block = memoryview(bytearray(min(BLOCK, count) or 1))
    sent = 0
    while sent < count:
        n = file.readinto(block[:min(BLOCK, count - sent)])
        if not n:
            break  # shorter than it said: the caller sees the shortfall
        pending = block[:n]
        while pending:  # send(), not sendall(): the timeout bounds each wait, as with sendfile
            pending = pending[sock.send(pending):]
        sent += n
    return sent
