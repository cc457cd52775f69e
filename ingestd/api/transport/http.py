"""The transport's vocabulary: a request as read off the wire, a response as it will be
written, and a body streamed from a file. Plain data, no sockets: the service builds
responses from these without knowing how they travel."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import BinaryIO

JSON = "application/json; charset=utf-8"
# methods counted by name in metrics; any other verb is "other", so a client inventing
# verbs cannot make the label set grow without bound
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})


@dataclass
class FileBody:
    """A response body read from an open file as it is sent, never whole into memory.

    The transport owns `file` from here on and closes it. `etag` (quoted, e.g.
    `"<sha256>"`) makes `If-None-Match` answer 304; `Range: bytes=a-b` is served as 206."""

    file: BinaryIO
    size: int
    etag: str | None = None


@dataclass
class Response:
    status: int
    body: bytes | FileBody = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON
    route: str = "unmatched"  # the route template, for metrics and logs
    close: bool = False  # close the connection after this answer
    # not an answer yet (a long-poll with nothing to say): the transport holds the request,
    # without a thread or a slot, and asks again when woken (`Server.wake_held`) or at
    # this monotonic time, whichever comes first
    hold_until: float | None = None


@dataclass
class Request:
    """A whole request (head and body) as read by the accepting loop."""

    method: str
    target: str
    version: str
    headers: Message
    body: bytes | None  # None: no Content-Length was sent
    client: str
    keep_alive: bool
    received: float  # monotonic time the last byte of it arrived

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def method_label(method: str | None) -> str:
    """A bounded name for a request method, for metric labels."""
    if method is None:
        return "none"
    return method if method in KNOWN_METHODS else "other"


def error(status: int, code: str, message: str, *, close: bool = False, headers: dict[str, str] | None = None,
          route: str = "unmatched") -> Response:
    """An error in the API's one shape, `{"error", "message"}`."""
    body = json.dumps({"error": code, "message": message}, ensure_ascii=True, separators=(",", ":")).encode()
    return Response(status, body, headers=headers or {}, close=close, route=route)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
