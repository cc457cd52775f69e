"""Every request a SharePoint source sends, to Graph or to SharePoint's download host.

One place decides, for all of them: the CA file (`verify=` on each request, so the
environment cannot override it), the timeouts, the User-Agent Microsoft asks for, the
bearer token (and one retry with a fresh token after a 401), throttling (429/503 wait
exactly `Retry-After`, through the tenant's shared gate, a bounded number of times),
a few retries for dropped connections, 5xx and JSON bodies cut short or garbled, and
typed errors carrying Graph's `request-id`.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import __version__
from ingestd.plugin.kit.throttle import Gate, Stopped, parse_retry_after

USER_AGENT = f"NONISV|ingestd|ingestd/{__version__}"
MAX_THROTTLED = 6  # retries after 429/503 before the job gives up as `throttled`
MAX_WAIT = 300.0  # a longer Retry-After ends the job (as throttled) rather than hold a worker
MAX_TRANSIENT = 3  # retries after a dropped connection, a 500/502/504 or an unusable body
TRANSIENT_BACKOFF = 1.0  # seconds; doubled on each retry (unless the answer gave Retry-After)
ERROR_BODY_LIMIT = 64 * 1024
THROTTLE_STATUSES = (429, 503)
TRANSIENT_STATUSES = (500, 502, 504)


def where(url: str) -> str:
    """A URL fit for messages: no query string (download URLs carry `tempauth`)."""
    parts = urlsplit(url)
    path = parts.path if len(parts.path) <= 200 else parts.path[:200] + "…"
    return f"{parts.scheme}://{parts.netloc}{path}"


def request_id(resp) -> str | None:
    return resp.headers.get("request-id") or resp.headers.get("x-ms-request-id") or resp.headers.get("SPRequestGuid")


@dataclass
class Attempts:
    """What one call has spent of its retry allowance.

    One object is shared by every layer that may ask again for the same thing (the
    status of an answer, the connection under it, the body in it, the sign-in), so their
    retries add up to one bound instead of multiplying.
    """

    throttled: int = 0
    transient: int = 0
    refreshed: bool = False

    def retry(self, code: Code, retry_after: str | None = None) -> float | None:
        """Spend one retry for a `throttled` or `transient` fault: the seconds to wait first
        (the server's Retry-After where it gave one, else our backoff), or None when the
        retries of that kind are spent or the server asks for longer than MAX_WAIT."""
        asked = parse_retry_after(retry_after)
        if code == Code.THROTTLED:
            if self.throttled >= MAX_THROTTLED:
                return None
            self.throttled += 1
            wait = min(60.0, 2.0 ** self.throttled) if asked is None else asked
        else:
            if self.transient >= MAX_TRANSIENT:
                return None
            self.transient += 1
            wait = TRANSIENT_BACKOFF * 2 ** (self.transient - 1) if asked is None else asked
        return wait if wait <= MAX_WAIT else None


class _Count:
    """A counter that several download threads add to."""

    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class Http:
    """The request policy for one job (its stop flag and log), over the source's session.

    Safe to use from several threads: the session's connection pool, the token source
    and the tenant gate are.
    """

    def __init__(self, session, tokens, gate: Gate, *, trust: str, timeout: tuple[float, float],
                 stop: threading.Event | None = None, log=None):
        self.session = session
        self.tokens = tokens
        self.gate = gate
        self.trust = trust
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.log = log
        self._throttled = _Count()  # responses that asked us to wait, for the job log

    @property
    def throttled(self) -> int:
        return self._throttled.value

    def twin(self, stop: threading.Event) -> "Http":
        """The same policy, session, tokens, gate and tally, stopping on `stop` instead of
        the job's flag: for work that may have to be called off while the job goes on
        (the downloads still running when another one fails the job)."""
        other = copy.copy(self)
        other.stop = stop
        return other

    # -- the entry points -------------------------------------------------------------

    def request(self, method: str, url: str, *, auth: bool = True, headers: dict | None = None,
                json_body=None, stream: bool = False, accept: tuple[int, ...] = (),
                spent: Attempts | None = None):
        """Send with the full policy; return the response (2xx, 3xx or a status in
        `accept`), or raise ConnectorError. Raises `Stopped` when the job is stopping.
        `spent` carries the retries a caller has already used on this call."""
        spent = spent or Attempts()
        while True:
            self._wait_for_gate(url)
            token = self.tokens.token(self.stop) if auth else None
            resp = self._send(method, url, token, headers, json_body, stream, spent)
            if resp is None:
                continue
            status = resp.status_code
            if status in accept or status < 400:
                return resp
            if status in THROTTLE_STATUSES:
                spent.throttled += 1
                self._throttled_by(resp, url, spent.throttled)
                continue
            if status == 401 and auth and not spent.refreshed:
                spent.refreshed = True
                _drain(resp)
                self.tokens.invalidate(token)
                continue
            if status in TRANSIENT_STATUSES:
                wait = spent.retry(Code.TRANSIENT, resp.headers.get("Retry-After"))
                if wait is not None:
                    _drain(resp)
                    self._pause(wait)
                    continue
            raise graph_error(resp, method, url)

    def get_json(self, url: str, *, accept: tuple[int, ...] = (), check: Callable[[dict], str | None] | None = None,
                 headers: dict | None = None) -> tuple[int, dict, object]:
        """GET a Graph JSON document: (status, body, response).

        A 2xx body that is not a JSON object (cut short or garbled on the way, a gateway's
        HTML page), or that `check` finds wanting, is a passing fault: it is asked for
        again from the same allowance as a dropped connection, then fails as `transient`
        naming the fault (never quoting the body). A status in `accept` comes with its
        body when that is a JSON object, else with {}.
        """
        spent = Attempts()
        while True:
            resp = self.request("GET", url, headers={"Accept": "application/json", **(headers or {})}, accept=accept,
                                spent=spent)
            body, problem = _document(resp, check)
            if problem is None:
                return resp.status_code, body, resp
            wait = spent.retry(Code.TRANSIENT, resp.headers.get("Retry-After"))
            if wait is None:
                raise ConnectorError(Code.TRANSIENT, f"GET {where(url)}: {problem}; gave up after "
                                     f"{spent.transient + 1} attempts", request_id=request_id(resp), retryable=True)
            if self.log is not None:
                self.log.warning("sharepoint response unusable; asking again", url=where(url), problem=problem,
                                 request_id=request_id(resp), attempt=spent.transient, wait_s=wait)
            self._pause(wait)

    # -- internals --------------------------------------------------------------------

    def _send(self, method, url, token, headers, json_body, stream, spent: Attempts):
        import requests

        sent = {"User-Agent": USER_AGENT, "client-request-id": str(uuid.uuid4()), **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        try:
            return self.session.request(method, url, headers=sent, json=json_body, stream=stream,
                                        verify=self.trust, timeout=self.timeout, allow_redirects=False)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:  # the last: a body cut short
            if isinstance(exc, requests.exceptions.SSLError) and not dropped_mid_tls(exc):
                raise ConnectorError(Code.CONFIG, f"TLS verification of {where(url)} failed; if a TLS-inspecting "
                                     "proxy or a private CA is in the way, set ca_bundle to its CA certificate(s)"
                                     ) from None
            wait = spent.retry(Code.TRANSIENT)
            if wait is None:
                raise ConnectorError(Code.TRANSIENT, f"{method} {where(url)}: {type(exc).__name__} after "
                                     f"{spent.transient + 1} attempts", retryable=True) from None
            self._pause(wait)
            return None

    def _wait_for_gate(self, url: str) -> None:
        remaining = self.gate.remaining()
        if remaining > MAX_WAIT:
            raise ConnectorError(Code.THROTTLED, f"Microsoft asked this tenant's clients to wait {remaining:.0f}s "
                                 f"more before calling {where(url)}; the next run will carry on", retryable=True)
        self.gate.wait(self.stop)

    def _throttled_by(self, resp, url: str, count: int) -> None:
        """Shut the tenant's gate for the Retry-After time: every request of every job of
        this tenant waits, not just this one (a longer wait than MAX_WAIT then ends them)."""
        wait = parse_retry_after(resp.headers.get("Retry-After"))
        rid = request_id(resp)
        _drain(resp)
        if count > MAX_THROTTLED:
            raise ConnectorError(Code.THROTTLED, f"{where(url)} still throttled ({resp.status_code}) after "
                                 f"{MAX_THROTTLED} waits; the next run will carry on", request_id=rid, retryable=True)
        if wait is None:
            wait = min(60.0, 2.0 ** count)
        self.gate.defer(wait)
        self._throttled.add()
        if self.log is not None:
            self.log.warning("sharepoint throttled; waiting", status=resp.status_code, retry_after_s=wait,
                             request_id=rid, url=where(url), attempt=count)

    def _pause(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped("stopping")


def dropped_mid_tls(exc: BaseException) -> bool:
    """Whether an SSL error from requests is a connection that ended mid-TLS (a reset,
    an EOF: a passing fault, which urllib3 reports as an SSL error too) rather than a
    handshake that failed (an untrusted certificate: the fix is ca_bundle)."""
    for cause in _causes(exc):
        if isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)):
            return True
        if isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None) == "UNEXPECTED_EOF_WHILE_READING":
            return True
    return False


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it wraps: requests, urllib3 and ssl keep the original as
    a cause or context, as a `reason`, or as an argument."""
    found: list[BaseException] = []
    todo: list = [exc]
    while todo and len(found) < 16:
        cause = todo.pop()
        if not isinstance(cause, BaseException) or any(cause is f for f in found):
            continue
        found.append(cause)
        todo += [cause.__cause__, cause.__context__, getattr(cause, "reason", None), *cause.args]
    return found


def _document(resp, check: Callable[[dict], str | None] | None) -> tuple[dict, str | None]:
    """(the JSON object a response carries, None), or ({}, what is wrong with it) for a
    2xx answer. Describes the fault only: the body may hold anything."""
    ok = 200 <= resp.status_code < 300
    try:
        body = json.loads(resp.content) if resp.content else {}
    except ValueError:  # UnicodeDecodeError included
        return {}, ("the response is not valid JSON (cut short or garbled on the way)" if ok else None)
    if not isinstance(body, dict):
        return {}, ("the response is JSON but not an object" if ok else None)
    if ok and check is not None:
        problem = check(body)
        if problem is not None:
            return {}, problem
    return body, None


def _drain(resp) -> None:
    """Release the connection of a response we will not read."""
    try:
        resp.close()
    except Exception:
        pass


def error_detail(resp) -> tuple[str | None, str | None, str | None]:
    """(Graph error code, message, request-id from the body) of an error response,
    reading at most `ERROR_BODY_LIMIT` bytes of it."""
    raw = bytearray()
    try:
        for chunk in resp.iter_content(8192):
            raw += chunk
            if len(raw) >= ERROR_BODY_LIMIT:
                break
    except Exception:
        pass
    finally:
        _drain(resp)
    try:
        error = json.loads(bytes(raw) or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        return None, None, None
    if not isinstance(error, dict):
        return None, str(error)[:300], None
    inner = error.get("innerError") or error.get("innererror") or {}
    body_rid = inner.get("request-id") if isinstance(inner, dict) else None
    return error.get("code"), (str(error.get("message") or "")[:300] or None), body_rid


_CODES = {401: Code.AUTH, 403: Code.PERMISSION, 404: Code.NOT_FOUND, 410: Code.NOT_FOUND, 409: Code.TRANSIENT,
          412: Code.TRANSIENT, 423: Code.TRANSIENT, 429: Code.THROTTLED, 503: Code.THROTTLED}
_HINTS = {
    401: "Graph rejected the access token even after a refresh; check the app registration",
    403: "the app has no access here: grant it Sites.Selected (read) on this site, or Sites.Read.All",
}


def graph_error(resp, method: str, url: str) -> ConnectorError:
    status = resp.status_code
    rid = request_id(resp)
    code, message, body_rid = error_detail(resp)
    kind = _CODES.get(status, Code.TRANSIENT if status >= 500 else Code.INTERNAL)
    text = f"{method} {where(url)} returned {status}"
    if code or message:
        text += f" ({': '.join(p for p in (code, message) if p)})"
    if status in _HINTS:
        text += f"; {_HINTS[status]}"
    return ConnectorError(kind, text, request_id=rid or body_rid, retryable=kind in (Code.TRANSIENT, Code.THROTTLED))
