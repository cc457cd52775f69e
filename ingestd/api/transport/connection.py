"""One client connection, in two halves that never run at once.

The accepting loop reads (`receive`, `take`): bytes go into a buffer without a thread
until a whole request (head and body) is there, so a client that trickles its request
costs a file descriptor and a few KiB, never a thread, and is dropped when the request's
total deadline passes, however steadily it drips. A pool thread then answers (`serve`):
computes the response inside a slot and writes it. Then the connection goes back to the
loop, with whatever the client pipelined still in its buffer.
"""

from __future__ import annotations

import email.utils
import socket
import time
from dataclasses import dataclass

from ingestd.api.transport import files
from ingestd.api.transport.http import FileBody, Request, Response, error, phrase
from ingestd.api.transport.parse import Head, Malformed, head_end, parse, skip_blank_lines
from ingestd.api.transport.state import Exchange, ServerState

RECV_BYTES = 16 * 1024
SERVER = "ingestd"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class Refusal:
    """An answer the transport decided on its own (malformed or oversized request)."""

    response: Response
    method: str | None = None
    path: str | None = None
    keep_alive: bool = False


Pending = Request | Refusal


class Connection:
    def __init__(self, sock: socket.socket, client: str, state: ServerState):
        self.sock, self.client, self.state = sock, client, state
        self.limits = state.limits
        self.buf = bytearray()
        self.opened = self.idle_since = time.monotonic()
        self.started: float | None = None  # when the first byte of the request being read arrived
        self._scanned = 0
        self._head: Head | None = None
        self._discard = 0  # bytes of a refused body still to be dropped
        self.held_s = 0.0  # how long the request being answered was held (a long-poll's wait)
        sock.setblocking(False)

    # -- the loop's half ------------------------------------------------------------------

    def deadline(self) -> float:
        if self.started is None:
            return self.idle_since + self.limits.idle_timeout
        return self.started + self.limits.request_timeout

    def receive(self) -> bool:
        """Take what has arrived; False once the client has closed or reset."""
        try:
            data = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        if self.started is None:
            self.started = time.monotonic()
        self.buf += data
        return True

    def take(self) -> Pending | None:
        """The next whole request in the buffer, or what to refuse it with; None while
        it is still arriving."""
        try:
            if self._head is None and not self._read_head():
                return None
            return self._read_body()
        except Malformed as exc:
            head = self._head
            method, target = (head.method, head.target) if head else (exc.method, exc.target)
            return Refusal(error(exc.status, exc.code, exc.message, close=True), method,
                           _path(target) if target is not None else None)

    def _read_head(self) -> bool:
        skip_blank_lines(self.buf)
        if not self.buf:
            self.started = None  # only blank lines so far: still idle
            return False
        end = head_end(self.buf, self._scanned)
        if end is None:
            self._scanned = len(self.buf)
            return False
        head = parse(bytes(self.buf[:end]))
        del self.buf[:end]
        self._scanned = 0
        self._head = head
        length = head.length or 0
        if length > self.limits.drain_body:
            raise Malformed(413, "body_too_large", f"the body is larger than {self.limits.max_body} bytes")
        if length > self.limits.max_body:
            self._discard = length
        elif head.expects_continue and len(self.buf) < length:
            self._send_now(_CONTINUE)
        return True

    def _read_body(self) -> Pending | None:
        head = self._head
        if self._discard:
            dropped = min(self._discard, len(self.buf))
            del self.buf[:dropped]
            self._discard -= dropped
            if self._discard:
                return None
            self._next()
            return Refusal(error(413, "body_too_large", f"the body is larger than {self.limits.max_body} bytes"),
                           head.method, _path(head.target), keep_alive=head.keep_alive)
        length = head.length or 0
        if len(self.buf) < length:
            return None
        body = bytes(self.buf[:length]) if head.length is not None else None
        del self.buf[:length]
        self._next()
        return Request(head.method, head.target, head.version, head.headers, body, self.client, head.keep_alive,
                       time.monotonic())

    def _next(self) -> None:
        """A request has been taken whole: what is left in the buffer starts the next."""
        self._head = None
        self.started = time.monotonic() if self.buf else None

    def expire(self) -> None:
        """The deadline passed: a request half-read gets 408, an idle connection just closes."""
        if self.started is None:
            return
        method = self._head.method if self._head else None
        path = _path(self._head.target) if self._head else None
        response = error(408, "request_timeout", "the request did not arrive in time")
        if self._send_now(self._render(response, False) + response.body):
            self._finished(Exchange(method, path, 408, "unmatched", time.monotonic() - self.started, self.client))

    def _send_now(self, data: bytes) -> bool:
        """A small write from the loop, which must never block: what does not fit now is dropped."""
        try:
            return self.sock.send(data) == len(data)
        except OSError:
            return False

    # -- a pool thread's half ---------------------------------------------------------------

    def serve(self, pending: Pending) -> bool | float:
        """Answer one request; whether the connection stays open for the next, or (a
        float) the time until which the request is held unanswered."""
        state = self.state
        with state.tracking():
            if isinstance(pending, Refusal):
                state.dequeue()
                response, method, path, started = pending.response, pending.method, pending.path, time.monotonic()
                keep = pending.keep_alive and not state.draining
            else:
                method, path, started = pending.method, pending.path, pending.received
                with state.slot():
                    response = state.respond(pending)
                if response.hold_until is not None:
                    return float(response.hold_until)
                keep = pending.keep_alive and not response.close and not state.draining
            status, head, body = self._prepare(response, pending, keep)
            self._finished(Exchange(method, path, status, response.route, time.monotonic() - started,
                                    self.client, held=self.held_s))
            self.held_s = 0.0
            sent = self._write(head, body)
        self.idle_since = time.monotonic()
        return keep and sent

    def _prepare(self, response: Response, pending: Pending, keep: bool) -> tuple[int, bytes, bytes | tuple]:
        """The status sent, the head to write, and the body: bytes, or (file, offset,
        count) to stream."""
        head_only = isinstance(pending, Request) and pending.method == "HEAD"
        body = response.body
        if isinstance(body, FileBody):
            return self._prepare_file(response, body, pending, keep, head_only)
        return response.status, self._render(response, keep, len(body)), b"" if head_only else body

    def _prepare_file(self, response: Response, body: FileBody, pending: Pending, keep: bool, head_only: bool):
        chosen = files.plan(body, pending.headers)  # only a Request's answer can carry a file
        if chosen.status == 416:
            refusal = error(416, "range_not_satisfiable", f"the range asked for is outside the {body.size} bytes",
                            headers={**response.headers, **chosen.headers}, route=response.route)
            body.file.close()
            return 416, self._render(refusal, keep, len(refusal.body)), b"" if head_only else refusal.body
        reply = Response(chosen.status, b"", {**response.headers, **chosen.headers}, response.content_type,
                         response.route)
        length = None if chosen.status == 304 else chosen.count
        if head_only or chosen.status == 304:
            body.file.close()
            return chosen.status, self._render(reply, keep, length), b""
        return chosen.status, self._render(reply, keep, length), (body.file, chosen.offset, chosen.count)

    def _render(self, response: Response, keep: bool, length: int | None = None) -> bytes:
        headers = {"Server": SERVER, "Date": email.utils.formatdate(usegmt=True)}
        if response.status != 304:
            headers["Content-Type"] = response.content_type
            headers["Content-Length"] = str(len(response.body) if length is None else length)
        headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **response.headers})
        if not keep:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {response.status} {phrase(response.status)}"]
        lines += [f"{name}: {_one_line(value)}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _write(self, head: bytes, body) -> bool:
        try:
            self.sock.settimeout(self.limits.send_timeout)  # blocking writes, each bounded
            if isinstance(body, tuple):
                file, offset, count = body
                with file:
                    self.sock.sendall(head)
                    return files.send(self.sock, file, offset, count) == count
            self.sock.sendall(head + body)
            return True
        except (TimeoutError, OSError):
            return False  # the client went away or stopped reading

    def _finished(self, exchange: Exchange) -> None:
        self.state.finished(exchange)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _path(target: str) -> str:
    return target.split("?", 1)[0]


def _one_line(value: str) -> str:
    """A header value can never split the head (a CR or LF would start a new header)."""
    return str(value).replace("\r", " ").replace("\n", " ")
