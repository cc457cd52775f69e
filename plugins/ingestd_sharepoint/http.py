"""Every request a SharePoint source sends, to Graph or to SharePoint's download host.

One place decides, for all of them: the CA file (`verify=` on each request, so the
environment cannot override it), the timeouts, the User-Agent Microsoft asks for, the
bearer token (and one retry with a fresh token after a 401), throttling (429/503 wait
exactly `Retry-After`, through the tenant's shared gate, a bounded number of times),
a few retries for dropped connections and 5xx, and typed errors carrying Graph's
`request-id`.
"""

from __future__ import annotations

import json
import threading
import uuid
from urllib.parse import urlsplit

from ingestd import __version__
from ingestd.errors import Code, ConnectorError
from ingestd.throttle import Gate, Stopped, parse_retry_after

USER_AGENT = f"NONISV|ingestd|ingestd/{__version__}"
MAX_THROTTLED = 6  # retries after 429/503 before the job gives up as `throttled`
MAX_WAIT = 300.0  # a longer Retry-After ends the job (as throttled) rather than hold a worker
MAX_TRANSIENT = 3  # retries after a dropped connection or a 500/502/504
TRANSIENT_BACKOFF = 1.0  # seconds; doubled on each retry
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


class Http:
    """The request policy for one job (its stop flag and log), over the source's session."""

    def __init__(self, session, tokens, gate: Gate, *, trust: str, timeout: tuple[float, float],
                 stop: threading.Event | None = None, log=None):
        self.session = session
        self.tokens = tokens
        self.gate = gate
        self.trust = trust
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self.log = log
        self.throttled = 0  # responses that asked us to wait, for the job log

    # -- the one entry point ----------------------------------------------------------

    def request(self, method: str, url: str, *, auth: bool = True, headers: dict | None = None,
                json_body=None, stream: bool = False, accept: tuple[int, ...] = ()):
        """Send with the full policy; return the response (2xx, 3xx or a status in
        `accept`), or raise ConnectorError. Raises `Stopped` when the job is stopping."""
        throttled = transient = 0
        refreshed = False
        while True:
            self._wait_for_gate(url)
            token = self.tokens.token() if auth else None
            resp = self._send(method, url, token, headers, json_body, stream, transient)
            if resp is None:
                transient += 1
                continue
            status = resp.status_code
            if status in accept or status < 400:
                return resp
            if status in THROTTLE_STATUSES:
                throttled += 1
                self._throttled(resp, url, throttled)
                continue
            if status == 401 and auth and not refreshed:
                refreshed = True
                _drain(resp)
                self.tokens.invalidate(token)
                continue
            if status in TRANSIENT_STATUSES and transient < MAX_TRANSIENT:
                transient += 1
                _drain(resp)
                self._pause(TRANSIENT_BACKOFF * 2 ** (transient - 1))
                continue
            raise graph_error(resp, method, url)

    def get_json(self, url: str, *, accept: tuple[int, ...] = ()) -> tuple[int, dict, object]:
        """GET a Graph JSON document: (status, body, response)."""
        resp = self.request("GET", url, headers={"Accept": "application/json"}, accept=accept)
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            raise ConnectorError(Code.TRANSIENT, f"GET {where(url)}: response is not JSON",
                                 request_id=request_id(resp), retryable=True) from None
        return resp.status_code, body, resp

    # -- internals --------------------------------------------------------------------

    def _send(self, method, url, token, headers, json_body, stream, transient):
        import requests

        sent = {"User-Agent": USER_AGENT, "client-request-id": str(uuid.uuid4()), **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        try:
            return self.session.request(method, url, headers=sent, json=json_body, stream=stream,
                                        verify=self.trust, timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError:
            raise ConnectorError(Code.CONFIG, f"TLS verification of {where(url)} failed; if a TLS-inspecting proxy "
                                 "or a private CA is in the way, set ca_bundle to its CA certificate(s)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:  # the last: a body cut short
            if transient >= MAX_TRANSIENT:
                raise ConnectorError(Code.TRANSIENT, f"{method} {where(url)}: {type(exc).__name__} after "
                                     f"{transient + 1} attempts", retryable=True) from None
            self._pause(TRANSIENT_BACKOFF * 2 ** transient)
            return None

    def _wait_for_gate(self, url: str) -> None:
        remaining = self.gate.remaining()
        if remaining > MAX_WAIT:
            raise ConnectorError(Code.THROTTLED, f"Microsoft asked this tenant's clients to wait {remaining:.0f}s "
                                 f"more before calling {where(url)}; the next run will carry on", retryable=True)
        self.gate.wait(self.stop)

    def _throttled(self, resp, url: str, count: int) -> None:
        wait = parse_retry_after(resp.headers.get("Retry-After"))
        rid = request_id(resp)
        _drain(resp)
        if count > MAX_THROTTLED:
            raise ConnectorError(Code.THROTTLED, f"{where(url)} still throttled ({resp.status_code}) after "
                                 f"{MAX_THROTTLED} waits; the next run will carry on", request_id=rid, retryable=True)
        if wait is None:
            wait = min(60.0, 2.0 ** count)
        self.gate.defer(wait)
        self.throttled += 1
        if self.log is not None:
            self.log.warning("sharepoint throttled; waiting", status=resp.status_code, retry_after_s=wait,
                             request_id=rid, url=where(url), attempt=count)

    def _pause(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped("stopping")


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
