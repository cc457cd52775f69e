"""Site and library lookup through Office365-REST-Python-Client's `GraphClient`.

Two things are changed in the client, both by subclassing rather than patching:

- the service root (fixed per national cloud inside the library) becomes
  `{graph_url}/v1.0`, so sovereign clouds and a local test server work;
- its transport sends every request through `http.Http`, so the library's calls get the
  same CA file, timeouts, User-Agent, throttle and typed errors as ours.

The client is used where it fits (site by URL, the site's drives with paging). Delta,
child listings and downloads are requested directly (`delta.py`, `download.py`): 3.3.0
drops `@odata.deltaLink` from delta responses and buffers downloads in memory.
Imported only when a job runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from office365.graph_client import GraphClient
from office365.graph_request import GraphRequest
from office365.runtime.client_request_exception import ClientRequestException
from office365.runtime.transport.base import BaseTransport

from ingestd.errors import Code, ConnectorError


class _Request(GraphRequest):
    def __init__(self, root: str):
        super().__init__()
        self._root = root

    @property
    def service_root_url(self) -> str:
        return self._root


class _Transport(BaseTransport):
    """Hands the library's requests to our request policy."""

    def __init__(self, http):
        self.http = http

    def execute(self, request):
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        method = request.method.value
        body = request.data if method in ("POST", "PATCH", "PUT") else None
        return self.http.request(method, request.url, headers=headers, json_body=body)


class Client(GraphClient):
    """A GraphClient bound to `{graph_url}/v1.0` and to our transport and tokens."""

    def __init__(self, http, graph_url: str):
        # The callback hands over the cached token and never fetches: an exception inside
        # the library's request hooks is logged there with a traceback. The transport then
        # sets the header itself, renewing the token when due or after a 401.
        super().__init__(token_callback=lambda: {"access_token": http.tokens.cached(), "token_type": "Bearer"})
        self._http = http
        self._root = f"{graph_url}/v1.0"

    def pending_request(self) -> GraphRequest:
        if self._pending_request is None:
            request = _Request(self._root)
            request.with_access_token(self._token_callback)
            request.transport = _Transport(self._http)
            self._pending_request = request
        return self._pending_request


@dataclass(frozen=True)
class Site:
    id: str
    web_url: str


@dataclass(frozen=True)
class Target:
    """One document library: its site and drive."""

    site_id: str
    site_url: str
    drive_id: str
    drive_name: str
    drive_url: str | None


def site(client: Client, site_url: str, host: str, path: str) -> Site:
    """A site by URL: a team site, a Teams channel's site or a OneDrive's personal site."""
    found = client.sites[host] if path in ("", "/") else client.sites.get_by_url(site_url)
    if path in ("", "/"):
        found.get()
    try:
        _execute(client.execute_query, f"looking up site {site_url}")
    except ConnectorError as exc:
        if exc.code == Code.NOT_FOUND:
            exc.message = f"site {site_url} not found ({exc.message})"
        raise
    if not found.id:
        raise ConnectorError(Code.NOT_FOUND, f"site {site_url} not found")
    return Site(found.id, found.web_url or site_url)


def libraries(client: Client, where: Site, site_url: str) -> list[Target]:
    """Every document library of a site, as Graph lists them (paged)."""
    drives = _execute(client.sites[where.id].drives.get_all().execute_query, f"listing the libraries of {site_url}")
    return [Target(where.id, where.web_url, drive.id, drive.name or "", drive.web_url)
            for drive in drives if drive.id]


def pick(targets: list[Target], library: str, site_url: str) -> Target:
    """A library by name (or by the last part of its URL, e.g. "Shared Documents"),
    case-insensitively."""
    for target in targets:
        url_name = unquote(urlsplit(target.drive_url or "").path.rstrip("/").rsplit("/", 1)[-1])
        if library.casefold() in (target.drive_name.casefold(), url_name.casefold()):
            return target
    known = ", ".join(repr(t.drive_name) for t in targets) or "none visible to this app"
    raise ConnectorError(Code.NOT_FOUND, f"library {library!r} not found in {site_url} (libraries: {known})")


def _execute(query, what: str):
    """Run a library query. Our transport has already turned HTTP errors into typed ones,
    so what the library still raises is its JSON parsing failing on a body cut short or
    garbled on the way (wrapped as ClientRequestException, an OSError, which core would
    take for a local I/O error): a passing failure of the service."""
    try:
        return query()
    except (ClientRequestException, ValueError) as exc:
        raise ConnectorError(Code.TRANSIENT, f"{what}: Graph's response is not valid JSON ({type(exc).__name__})",
                             retryable=True) from None
