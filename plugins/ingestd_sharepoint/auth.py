"""App-only access tokens for Microsoft Graph, through MSAL's client-credentials flow.

The MSAL app is built here rather than by the Office 365 client because its own
`with_client_secret`/`with_certificate` do not pass `instance_discovery=False` (MSAL
would otherwise ask login.microsoftonline.com about any authority, national clouds and
test servers included), and because MSAL's HTTP must carry an explicit `verify=`.

A sign-in that meets an outage (429/5xx, a dropped or cut-short connection, an answer
that is not JSON) is tried again on the bounded policy Graph requests follow
(`http.Attempts`); a refusal of the credentials is final at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Credential
from ingestd.plugin.kit import mask_secret
from ingestd.plugin.kit.throttle import Stopped

from . import credential as creds
from . import http as policy

REFRESH_MARGIN = 300.0  # seconds before expiry at which a cached token is replaced

# What the common AADSTS codes mean for an operator, and what to do about each.
_HINTS = {
    "AADSTS7000215": "the client secret is wrong: use the secret's Value (not its Secret ID)",
    "AADSTS7000222": "the client secret has expired: create a new one and update the registry",
    "AADSTS700016": "no app with this client_id exists in the tenant: check client_id and tenant_id",
    "AADSTS90002": "the tenant does not exist: check tenant_id",
    "AADSTS700027": "the certificate is not registered on the app (or the key does not match it)",
    "AADSTS700024": "the client assertion is outside its validity window: check the system clock",
    "AADSTS1002012": "the requested scope is invalid: check graph_url",
}


class _NoRawTokenResponses(logging.Filter):
    """MSAL logs a token response it cannot parse, body and traceback included. Cut
    short, that body holds most of an access token; the failure is reported as a typed
    error instead, so the line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token response is not in json format")


def _quiet_msal() -> None:
    log = logging.getLogger("msal.oauth2cli.oauth2")
    if not any(isinstance(f, _NoRawTokenResponses) for f in log.filters):
        log.addFilter(_NoRawTokenResponses())


_quiet_msal()


class _Passing(Exception):
    """A sign-in attempt met an outage, not a verdict: worth another try."""

    def __init__(self, error: ConnectorError, retry_after: str | None):
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class _MsalHttp:
    """The HTTP client handed to MSAL: a requests session with `verify`, a timeout and
    our User-Agent on every call, so neither environment variables nor MSAL's defaults
    decide which CAs are trusted or how long a login may hang."""

    def __init__(self, trust: str, timeout: tuple[float, float], user_agent: str):
        import requests

        self._session = requests.Session()
        self._trust = trust
        self._timeout = timeout
        self._user_agent = user_agent
        self.last_status: int | None = None  # of the latest response: tells an outage from a refusal
        self.retry_after: str | None = None  # its Retry-After header, if any

    def _headers(self, headers) -> dict:
        return {**(headers or {}), "User-Agent": self._user_agent}

    def get(self, url, params=None, headers=None, **_):
        return self._seen(self._session.get(url, params=params, headers=self._headers(headers), verify=self._trust,
                                            timeout=self._timeout))

    def post(self, url, params=None, data=None, headers=None, **_):
        return self._seen(self._session.post(url, params=params, data=data, headers=self._headers(headers),
                                             verify=self._trust, timeout=self._timeout))

    def _seen(self, resp):
        self.last_status = resp.status_code
        self.retry_after = resp.headers.get("Retry-After")
        return resp

    def close(self) -> None:
        self._session.close()


class TokenSource:
    """Tokens for one credential, reused until `REFRESH_MARGIN` before they expire."""

    def __init__(self, cred: Credential, *, authority_url: str, graph_url: str, trust: str,
                 timeout: tuple[float, float], user_agent: str):
        self.credential_name = cred.name
        self.fingerprint = creds.fingerprint(cred)
        self.tenant_id = cred.require("tenant_id")
        self._client_id = cred.require("client_id")
        self._secret = cred.get("client_secret") if cred.type == creds.SECRET else None
        self._certificate = creds.load_certificate(cred) if cred.type == creds.CERTIFICATE else None
        self.authority = f"{authority_url}/{self.tenant_id}"
        self.scope = f"{graph_url}/.default"
        self.trust = trust
        self._timeout = timeout
        self._user_agent = user_agent
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def token(self, stop: threading.Event | None = None) -> str:
        """A valid token, fetched when due. Waits between sign-in attempts end early
        (raising `Stopped`) when `stop` is set."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch(stop or threading.Event())
            return self._token

    def cached(self) -> str:
        """The current token without fetching one ('' if none): for callers that must
        not fail, like the Office 365 client's token callback."""
        with self._lock:
            return self._token or ""

    def invalidate(self, rejected: str | None = None) -> None:
        """Graph refused a token before its expiry (revoked, or clocks disagree)."""
        with self._lock:
            if rejected is None or rejected == self._token:
                self._token = None

    def retarget(self, trust: str) -> None:
        """Use a different CA file from the next token request on."""
        with self._lock:
            self.trust = trust

    def close(self) -> None:
        with self._lock:
            self._token = None

    # -- internals --------------------------------------------------------------------

    def _fetch(self, stop: threading.Event) -> None:
        """A token from the endpoint, trying again (bounded) through outages of the
        sign-in service; a refusal, or a TLS failure, raises at once."""
        spent = policy.Attempts()
        while True:
            try:
                result = self._attempt()
                break
            except _Passing as passing:
                wait = spent.retry(passing.error.code, passing.retry_after)
                if wait is None:
                    error = passing.error
                    error.message += f" (gave up after {1 + spent.throttled + spent.transient} attempts)"
                    raise error from None
            if stop.wait(wait):
                raise Stopped("stopping")
        lifetime = float(result.get("expires_in") or 0)
        self._token = result["access_token"]
        # masked in messages like the registry's secrets; one slot per app, so an hourly
        # token replaces the last but one instead of growing the set for ever
        mask_secret(self._token, slot=f"entra:{self.authority}:{self._client_id}")
        self._renew_at = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 2)

    def _attempt(self) -> dict:
        """One sign-in with a fresh MSAL app (about hourly: MSAL's own caches would
        otherwise hand back the very token being replaced or refused, or a throttled
        answer they remember): the token response, or ConnectorError for a refusal, or
        _Passing for an outage."""
        http = _MsalHttp(self.trust, self._timeout, self._user_agent)
        try:
            try:
                result = self._build_app(http).acquire_token_for_client(scopes=[self.scope])
            except Exception as exc:
                raise _verdict(_outage(http.last_status, self.authority)
                               or _transport_error(exc, self.authority), http) from None
        finally:
            http.close()
        if "access_token" not in result:
            raise _verdict(_outage(http.last_status, self.authority) or self._refused(result), http)
        return result

    def _build_app(self, http: "_MsalHttp"):
        import msal

        if self._certificate is not None:
            client_credential = {
                "private_key": self._certificate.private_key_pem,
                "public_certificate": self._certificate.certificate_pem,
                "passphrase": self._certificate.password,
            }
        else:
            client_credential = self._secret
        return msal.ConfidentialClientApplication(
            self._client_id, client_credential=client_credential, authority=self.authority,
            instance_discovery=False, http_client=http, timeout=self._timeout[1],
        )

    def _refused(self, result: dict) -> ConnectorError:
        error = str(result.get("error") or "error")
        description = str(result.get("error_description") or "").strip()
        first = description.splitlines()[0] if description else ""
        code = first.split(":", 1)[0] if first.startswith("AADSTS") else ""
        hint = _HINTS.get(code, "check tenant_id, client_id and the secret or certificate")
        message = (f"authentication failed for credential {self.credential_name!r}: Entra ID refused the "
                   f"client credentials ({error}{': ' + first[:300] if first else ''}); {hint}")
        return ConnectorError(Code.AUTH, message, request_id=result.get("correlation_id") or result.get("trace_id"))


def _verdict(error: ConnectorError, http: _MsalHttp) -> Exception:
    """What to raise for a failed attempt: a passing error to try again, or the error."""
    return _Passing(error, http.retry_after) if error.retryable else error


def _outage(status: int | None, authority: str) -> ConnectorError | None:
    """The sign-in service itself failing (429, 5xx) is not a verdict on the credentials."""
    if status in (429, 503):
        return ConnectorError(Code.THROTTLED, f"{authority} is throttling sign-ins (HTTP {status}); the next run "
                              "will carry on", retryable=True)
    if status is not None and status >= 500:
        return ConnectorError(Code.TRANSIENT, f"{authority} failed the sign-in (HTTP {status}); the next run will "
                              "carry on", retryable=True)
    return None


def _transport_error(exc: Exception, authority: str) -> ConnectorError:
    """Map what MSAL or requests raised while talking to the authority."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError) and not policy.dropped_mid_tls(exc):
        return ConnectorError(Code.CONFIG, f"TLS verification of {authority} failed; if a TLS-inspecting proxy or "
                              "a private CA is in the way, set ca_bundle to its CA certificate(s)")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError)):  # the last: an answer cut short
        return ConnectorError(Code.TRANSIENT, f"cannot reach {authority}: {type(exc).__name__}", retryable=True)
    if _garbled(exc):  # checked before ValueError: a JSONDecodeError is one
        return ConnectorError(Code.TRANSIENT, f"{authority} answered the sign-in with a body that is not valid "
                              "JSON (cut short or garbled on the way)", retryable=True)
    if isinstance(exc, ValueError):  # MSAL's OpenID discovery got a 4xx: unknown tenant or wrong authority
        return ConnectorError(Code.AUTH, f"OpenID discovery at {authority} failed (unknown tenant_id, or a "
                              f"wrong authority_url): {str(exc)[:300]}")
    return ConnectorError(Code.AUTH, f"token request to {authority} failed: {type(exc).__name__}: {str(exc)[:300]}")


def _garbled(exc: BaseException) -> bool:
    """Whether an answer could not be parsed as JSON. MSAL raises the parser's error for
    a token response, but re-raises it for the OpenID configuration as a plain ValueError
    (the one it also uses for an unknown tenant), with the parser's error as context."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, json.JSONDecodeError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
