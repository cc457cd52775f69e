"""A fake Microsoft Graph + Entra ID token endpoint, over real HTTPS on 127.0.0.1.

Serves what the SharePoint connector and MSAL use, in the shapes Microsoft documents:
OpenID configuration and `/{tenant}/oauth2/v2.0/token` (client secret, or a certificate
JWT assertion it verifies), site by path (team sites, personal sites), a site's drives,
drive delta with pages, next and delta links (keeping `$select`), `410 Gone` for
invalidated links, items, children, and `/content` redirecting to a pre-authenticated
download URL (with `Range` support); a drive's list, the list-item delta with
`$expand=fields($select=...)`; an item's permissions; delta's sharing preferences
(`Prefer: hierarchicalsharing`, `deltashowsharingchanges`, which Graph documents as needing
`deltashowremovedasdeleted` and `deltatraversepermissiongaps` too: the fake refuses it
without them). Where the documentation is silent the fake says what it assumes: a plain
delta does not report permission-only changes; `$select=*,sharepointIds` keeps the
download URL.

Tests script it: add apps, sites and files, inject 429/503 with `Retry-After`, damage
answers (cut short, not JSON, a reset connection) on any endpoint, sign-in included,
revoke tokens (then Graph answers 401), cut a download short, damage downloads (`garble`),
serve Office files whose bytes differ from their listing (`Drive.add(rewrites=True)`),
expire the `@microsoft.graph.downloadUrl` a listing carries, hold downloads open to see
how many a client runs at once. Every request is recorded with
monotonic timestamps taken by the server, so a test can check from this side of the
wire how long the client really waited.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .drive import Drive
from .entra import EntraEndpoints
from .tls import CA, issue_server_cert

MAX_BODY = 64 * 1024
GRAPH_APP = "00000003-0000-0000-c000-000000000000"


@dataclass
class Record:
    method: str
    path: str
    query: dict
    headers: dict
    started: float
    kind: str = "other"  # openid | token | graph | download | other
    status: int | None = None
    ended: float | None = None
    token: str | None = None  # bearer token presented, if any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    body: dict | None = None  # the JSON answered, for tests that look at what was served
    fault: str | None = None  # the status or damage injected, if any


DAMAGE = ("truncate", "short", "garbage", "reset")
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>upstream sent an invalid response</body></html>"


@dataclass
class Fault:
    """Answer matching requests with `status` (and `Retry-After`), `count` times; or,
    with `damage`, serve their real answer damaged:

    truncate  the full Content-Length, then part of the body, then the connection closes
    short     part of the body, with a Content-Length saying that is all (well framed, not JSON)
    garbage   a gateway's HTML page instead of the JSON, status unchanged
    reset     the connection reset (RST) before any byte of an answer
    """

    status: int | None
    count: int
    retry_after: str | None = None
    match: object = None  # callable(Record) -> bool; None matches Graph and downloads
    used: int = 0
    damage: str | None = None

    @property
    def name(self) -> str:
        return self.damage or str(self.status)


class Flight:
    """The downloads being served: how many now, the most at once, how many finished.

    `hold(wave)` keeps each download from answering until `wave` of them have arrived
    (its own wave: arrivals 1..wave, then wave+1..2*wave, ...) or `timeout` passes, so
    a client running N at once shows a peak of exactly N. `released` ends every hold.
    """

    def __init__(self):
        self.cond = threading.Condition()
        self.now = self.peak = self.arrived = self.finished = 0
        self.wave: int | None = None
        self.timeout = 5.0
        self.released = False

    def hold(self, wave: int, timeout: float = 5.0) -> None:
        with self.cond:
            self.wave, self.timeout, self.released = wave, timeout, False

    def release(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def enter(self) -> None:
        with self.cond:
            self.now += 1
            self.arrived += 1
            self.peak = max(self.peak, self.now)
            self.cond.notify_all()
            if self.wave:
                full = -(-self.arrived // self.wave) * self.wave  # the arrival count that fills this wave
                self.cond.wait_for(lambda: self.released or self.arrived >= full, timeout=self.timeout)

    def leave(self) -> None:
        with self.cond:
            self.now -= 1
            self.finished += 1
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Block until `predicate(self)` holds (True) or `timeout` passes (False)."""
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout=timeout)


@dataclass
class App:
    client_id: str
    secret: str | None = None
    certificates: list = field(default_factory=list)  # cryptography x509 certificates


@dataclass
class Site:
    id: str
    host: str
    path: str
    web_url: str
    title: str
    drives: list[Drive] = field(default_factory=list)

    def add_drive(self, name: str = "Documents", url_name: str = "Shared Documents",
                  drive_type: str = "documentLibrary") -> Drive:
        drive = Drive(self, name, url_name, drive_type)
        self.drives.append(drive)
        return drive

    def json(self) -> dict:
        return {
            "createdDateTime": "2021-03-01T09:00:00Z", "description": "", "id": self.id,
            "lastModifiedDateTime": "2024-05-02T10:11:12Z", "name": self.path.rsplit("/", 1)[-1] or self.host,
            "webUrl": self.web_url, "displayName": self.title, "root": {},
            "siteCollection": {"hostname": self.host},
        }


class FakeGraph(EntraEndpoints):
    def __init__(self, ca: CA, directory: Path, tenant: str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"):
        self.ca = ca
        self.directory = directory
        self.tenant = tenant
        self.apps: dict[str, App] = {}
        self.sites: list[Site] = []
        self.tokens: dict[str, tuple[str, float]] = {}
        self.revoked: set[str] = set()
        self.records: list[Record] = []
        self.faults: list[Fault] = []
        self.cursors: dict[str, tuple[list[dict], str]] = {}
        self.downloads: dict[str, tuple[Drive, str]] = {}
        self.cuts: dict[str, int] = {}  # item id -> bytes to send before dropping the connection (once)
        self.cut_expires_url = False  # a cut download's URL stops working too (as an hour-old one does)
        self.expired: dict[str, int] = {}  # tempauth -> the status its download URL now answers
        self.garble: dict[str, int] = {}  # item id -> downloads still to damage, each differently
        self.garbled = 0  # damaged downloads so far
        self.ignore_if_range = False  # answer a Range request with 206 whatever its If-Range says
        self.page_size = 3
        self.token_lifetime = 3599
        self.revoke_after: int | None = None  # revoke every token after this many more Graph requests
        self.flight = Flight()
        self.before_download = None  # callable(item id), called as a download is about to be answered
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> "FakeGraph":
        cert, key = issue_server_cert(self.ca, self.directory)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        self._server = _Server(("127.0.0.1", 0), _Handler, fake=self, tls=tls)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fakegraph", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting --------------------------------------------------------------------

    def add_app(self, client_id: str, secret: str | None = None, certificate=None) -> App:
        app = self.apps[client_id] = App(client_id, secret, [certificate] if certificate is not None else [])
        return app

    def add_site(self, host: str = "contoso.sharepoint.com", path: str = "/sites/legal", title: str = "Legal") -> Site:
        site_id = f"{host},{uuid.uuid4()},{uuid.uuid4()}"
        site = Site(site_id, host, path, f"https://{host}{quote(path)}", title)
        self.sites.append(site)
        return site

    def fail(self, status: int = 429, count: int = 1, retry_after: str | None = "1", match=None) -> Fault:
        fault = Fault(status, count, retry_after, match)
        with self.lock:
            self.faults.append(fault)
        return fault

    def damage(self, kind: str, count: int = 1, match=None, retry_after: str | None = None) -> Fault:
        """Damage the next `count` answers to matching requests (see `Fault`). A `match`
        may take sign-in requests (kinds `openid`, `token`) too. Damage other than
        `reset` applies to JSON answers; downloads have `cuts` and `Node.served`."""
        if kind not in DAMAGE:
            raise ValueError(f"unknown damage {kind!r}; one of {DAMAGE}")
        fault = Fault(None, count, retry_after, match, damage=kind)
        with self.lock:
            self.faults.append(fault)
        return fault

    def expire_download_urls(self, status: int = 401) -> None:
        """Every download URL issued so far now answers `status` (401 as an expired
        tempauth does; 403 or 404 as some tenants and proxies answer)."""
        with self.lock:
            self.expired.update({tempauth: status for tempauth in self.downloads})
            self.downloads.clear()

    def revoke_tokens(self) -> None:
        with self.lock:
            self.revoked.update(self.tokens)

    def graph(self) -> list[Record]:
        return [r for r in self.records if r.kind == "graph"]

    def of_kind(self, kind: str) -> list[Record]:
        return [r for r in self.records if r.kind == kind]

    # -- dispatch ---------------------------------------------------------------------

    def handle(self, h: "_Handler", method: str) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        rec = Record(method, path, parse_qs(parts.query), headers, time.monotonic())
        with self.lock:
            self.records.append(rec)
        h.record = rec
        try:
            self._route(h, rec, method, path)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            h.close_connection = True

    def _route(self, h, rec: Record, method: str, path: str) -> None:
        rec.kind = _kind(method, path)
        if rec.kind == "other":
            return h.send_json(404, {"error": {"code": "itemNotFound", "message": "no such endpoint"}})
        if self._faulted(h, rec):
            return
        if rec.kind == "openid":
            return self._openid(h, path.split("/")[1])
        if rec.kind == "token":
            return self._token(h, path.split("/")[1])
        if rec.kind == "download":
            return self._download(h, rec)
        if not self._authorized(h, rec):
            return
        return self._graph(h, rec, path[len("/v1.0"):])

    def _faulted(self, h, rec: Record) -> bool:
        """Apply the first fault that takes this request: True when it has been answered
        (a status, a reset); a damaging fault instead marks the answer to come."""
        with self.lock:
            fault = next((f for f in self.faults if f.used < f.count
                          and (f.match(rec) if f.match else rec.kind in ("graph", "download"))), None)
            if fault is None:
                return False
            fault.used += 1
        rec.fault = fault.name
        extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.damage == "reset":
            h.reset()
            return True
        if fault.damage is not None:
            h.damage, h.damage_headers = fault.damage, extra
            return False
        code = "TooManyRequests" if fault.status == 429 else "serviceNotAvailable"
        h.send_json(fault.status, graph_error(code, "Please retry after the time in Retry-After.", rec), extra)
        return True

    # -- Graph ------------------------------------------------------------------------

    def _authorized(self, h, rec: Record) -> bool:
        auth = rec.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        rec.token = token
        with self.lock:
            if self.revoke_after is not None:
                self.revoke_after -= 1
                if self.revoke_after < 0:
                    self.revoked.update(self.tokens)
                    self.revoke_after = None
            known = self.tokens.get(token or "")
            valid = known is not None and known[1] > time.monotonic() and token not in self.revoked
        if valid:
            return True
        h.send_json(401, graph_error("InvalidAuthenticationToken", "Access token has expired or is not yet valid.", rec),
                    {"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                         f'common/oauth2/authorize", client_id="{GRAPH_APP}"'})
        return False

    def _graph(self, h, rec: Record, path: str) -> None:
        if rec.method != "GET":
            return h.send_json(405, graph_error("invalidRequest", "only GET is faked", rec))
        routes = [
            (r"/sites/([^/:]+):(/.*?):?", self._site_by_path),
            (r"/sites/([^/]+)/drives", self._drives),
            (r"/sites/([^/]+)/lists/([^/]+)/items/delta", self._list_delta),
            (r"/sites/([^/]+)", self._site_by_id),
            (r"/drives/([^/]+)/root/delta", self._delta),
            (r"/drives/([^/]+)/list", self._list),
            (r"/drives/([^/]+)/items/([^/]+)/children", self._children),
            (r"/drives/([^/]+)/items/([^/]+)/permissions", self._permissions),
            (r"/drives/([^/]+)/items/([^/]+)/content", self._content),
            (r"/drives/([^/]+)/items/([^/]+)", self._item),
        ]
        for pattern, handler in routes:
            if match := re.fullmatch(pattern, path):
                return handler(h, rec, *match.groups())
        h.send_json(400, graph_error("invalidRequest", f"Invalid request: {path}", rec))

    def _site_by_path(self, h, rec, host: str, path: str) -> None:
        for site in self.sites:
            if site.host.lower() == host.lower() and site.path.lower() == path.rstrip("/").lower():
                return h.send_json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#sites/$entity", **site.json()})
        h.send_json(404, graph_error("itemNotFound", "Requested site could not be found", rec))

    def _site_by_id(self, h, rec, site_id: str) -> None:
        for site in self.sites:
            if site.id == site_id or (site.host == site_id and site.path in ("", "/")):
                return h.send_json(200, site.json())
        h.send_json(404, graph_error("itemNotFound", "Requested site could not be found", rec))

    def _drives(self, h, rec, site_id: str) -> None:
        site = next((s for s in self.sites if s.id == site_id), None)
        if site is None:
            return h.send_json(404, graph_error("itemNotFound", "Requested site could not be found", rec))
        value = [{
            "createdDateTime": "2021-03-01T09:00:00Z", "description": "", "id": d.id,
            "lastModifiedDateTime": "2024-05-02T10:11:12Z", "name": d.name,
            "webUrl": f"{site.web_url}/{quote(d.url_name)}", "driveType": d.drive_type,
            "createdBy": {"user": {"displayName": "System Account"}},
        } for d in site.drives]
        h.send_json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#drives", "value": value})

    def _drive(self, drive_id: str) -> Drive | None:
        return next((d for s in self.sites for d in s.drives if d.id == drive_id), None)

    def _delta(self, h, rec, drive_id: str) -> None:
        drive = self._drive(drive_id)
        if drive is None:
            return h.send_json(404, graph_error("itemNotFound", "The resource could not be found.", rec))
        prefer = _prefer(rec)
        if "deltashowsharingchanges" in prefer and not {"deltashowremovedasdeleted",
                                                         "deltatraversepermissiongaps"} <= prefer:
            return h.send_json(400, graph_error(
                "invalidRequest", "Prefer: deltashowsharingchanges requires deltashowremovedasdeleted and "
                "deltatraversepermissiongaps", rec))
        sharing = bool(prefer & {"hierarchicalsharing", "deltashowsharingchanges"})
        with drive.lock:
            skip = rec.query.get("$skiptoken", [None])[0]
            if skip is not None:
                cursor, _, offset = skip.partition(".")
                items, end = self.cursors[cursor]
                offset = int(offset)
            else:
                token = rec.query.get("token", [None])[0]
                if token is None:
                    items = [drive.delta_json(n) for n in drive.live()]
                else:
                    seq = _decode_token(token)
                    if seq < drive.oldest_valid:
                        return h.send_json(410, graph_error(
                            "resyncRequired", "Resync required. Replace any local items with the server's version "
                            "(including deletes) if you're sure that the service was up to date with your local "
                            "changes when you last sync'd. Upload any local changes that the server doesn't know "
                            "about.", rec, inner_code="resyncChangesApplyDifferences"),
                            {"Location": f"{self.base_url}/v1.0/drives/{drive.id}/root/delta"})
                    items = drive.changes_since(seq, sharing=sharing)
                end = _encode_token(drive.seq)
                cursor, offset = secrets.token_hex(8), 0
                self.cursors[cursor] = (items, end)
            select = _select(rec)
            page = [self._render(drive, entry, select, prefer) for entry in items[offset:offset + self.page_size]]
        body = {"@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(driveItem)", "value": page}
        link = f"{self.base_url}/v1.0/drives/{drive.id}/root/delta?" + (
            f"$select={quote(','.join(select), safe=',*')}&" if select else "")
        if offset + self.page_size < len(items):
            body["@odata.nextLink"] = f"{link}$skiptoken={cursor}.{offset + self.page_size}"
        else:
            body["@odata.deltaLink"] = f"{link}token={end}"
        h.send_json(200, body)

    def _render(self, drive: Drive, entry: dict, select: list[str] | None = None, prefer=frozenset()) -> dict:
        """A driveItem as this request sees it: the `shared` facet as its preferences
        ask (hierarchical sharing: only on roots of permission hierarchies),
        `@microsoft.graph.sharedChanged` on sharing changes when asked for,
        `sharepointIds` only when selected, and the download URL."""
        out = {k: v for k, v in entry.items() if not k.startswith("_")}
        facet = entry.get("_shared_hierarchical") if "hierarchicalsharing" in prefer else entry.get("_shared")
        if facet is not None:
            out["shared"] = facet
        if "deltashowsharingchanges" in prefer and entry.get("_sharing_change"):
            out["@microsoft.graph.sharedChanged"] = "True"
        node = drive.nodes.get(entry["id"])
        if select and "sharepointIds" in select and node is not None and "deleted" not in entry:
            out["sharepointIds"] = drive.sharepoint_ids(node)
        return self._with_download_url(drive, out)

    def _list(self, h, rec, drive_id: str) -> None:
        """A drive's list (`GET /drives/{id}/list`)."""
        drive = self._drive(drive_id)
        if drive is None:
            return h.send_json(404, graph_error("itemNotFound", "The resource could not be found.", rec))
        h.send_json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#lists/$entity", "id": drive.list_id,
                          "name": drive.url_name, "displayName": drive.name,
                          "webUrl": f"{drive.site.web_url}/{quote(drive.url_name)}",
                          "list": {"template": "documentLibrary", "hidden": False}})

    def _list_delta(self, h, rec, site_id: str, list_id: str) -> None:
        """`GET /sites/{site}/lists/{list}/items/delta`, with `$expand=fields($select=...)`:
        list items changed since the token (each once, latest state; all at first),
        paged, with next and delta links that keep the query; 410 once invalidated."""
        drive = next((d for s in self.sites for d in s.drives if d.list_id == list_id and s.id == site_id), None)
        if drive is None:
            return h.send_json(404, graph_error("itemNotFound", "The resource could not be found.", rec))
        expand = rec.query.get("$expand", [""])[0]
        wanted = re.fullmatch(r"fields(?:\(\$select=([^)]*)\))?", expand) if expand else None
        if expand and wanted is None:
            return h.send_json(400, graph_error("invalidRequest", f"Parsing OData Select and Expand failed: {expand}",
                                                rec))
        columns = [c for c in wanted.group(1).split(",") if c] if wanted and wanted.group(1) else None
        with drive.lock:
            skip = rec.query.get("$skiptoken", [None])[0]
            if skip is not None:
                cursor, _, offset = skip.partition(".")
                nodes, end = self.cursors[cursor]
                offset = int(offset)
            else:
                token = rec.query.get("token", [None])[0]
                if token is None:
                    nodes = [n for n in drive.live() if n.kind != "root"]
                else:
                    seq = _decode_token(token)
                    if seq < drive.list_oldest_valid:
                        return h.send_json(410, graph_error("resyncRequired", "Resync required.", rec,
                                                            inner_code="resyncChangesApplyDifferences"))
                    nodes = drive.list_changes_since(seq)
                end = _encode_token(drive.seq)
                cursor, offset = secrets.token_hex(8), 0
                self.cursors[cursor] = (nodes, end)
            page = []
            for node in nodes[offset:offset + self.page_size]:
                item = drive.list_item_json(node, columns)
                if not wanted:
                    item.pop("fields", None)
                page.append(item)
        body = {"@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(listItem)", "value": page}
        query = "&".join(f"{k}={quote(rec.query[k][0], safe='(),=$*')}" for k in ("$select", "$expand") if k in rec.query)
        link = f"{self.base_url}/v1.0/sites/{site_id}/lists/{list_id}/items/delta?" + (f"{query}&" if query else "")
        if offset + self.page_size < len(nodes):
            body["@odata.nextLink"] = f"{link}$skiptoken={cursor}.{offset + self.page_size}"
        else:
            body["@odata.deltaLink"] = f"{link}token={end}"
        h.send_json(200, body)

    def _permissions(self, h, rec, drive_id: str, item_id: str) -> None:
        """`GET .../items/{id}/permissions`: the item's effective permissions."""
        drive, node = self._node(h, rec, drive_id, item_id)
        if node is not None:
            with drive.lock:
                value = drive.permissions_json(node)
            h.send_json(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(permission)",
                              "value": value})

    def _node(self, h, rec, drive_id: str, item_id: str):
        drive = self._drive(drive_id)
        node = drive.nodes.get(item_id) if drive else None
        if node is None or node.deleted:
            h.send_json(404, graph_error("itemNotFound", "The resource could not be found.", rec))
            return None, None
        return drive, node

    def _item(self, h, rec, drive_id: str, item_id: str) -> None:
        drive, node = self._node(h, rec, drive_id, item_id)
        if node is not None:
            h.send_json(200, self._render(drive, self._plain(drive, node), _select(rec)))

    @staticmethod
    def _plain(drive: Drive, node) -> dict:
        """An item as a plain GET or listing has it: sharing as a default delta shows it."""
        return {**drive.item_json(node), "_shared": drive.shared_facet(node, hierarchical=False)}

    def _with_download_url(self, drive: Drive, entry: dict) -> dict:
        """A file as Graph lists it: with `@microsoft.graph.downloadUrl`, a pre-authenticated
        URL minted as the answer is made, valid for a short while (see
        `expire_download_urls`). Deleted items carry none."""
        node = drive.nodes.get(entry["id"])
        if "file" not in entry or "deleted" in entry or node is None or node.deleted:
            return entry
        return {**entry, "@microsoft.graph.downloadUrl": self._mint(drive, node)}

    def _mint(self, drive: Drive, node) -> str:
        tempauth = secrets.token_urlsafe(24)
        with self.lock:
            self.downloads[tempauth] = (drive, node.id)
        return (f"{self.base_url}{quote(drive.site.path)}/_layouts/15/download.aspx?UniqueId={node.guid}"
                f"&Translate=false&tempauth={tempauth}&ApiVersion=2.0")

    def _children(self, h, rec, drive_id: str, item_id: str) -> None:
        drive, node = self._node(h, rec, drive_id, item_id)
        if node is None:
            return
        kids = sorted((n for n in drive.nodes.values() if n.parent == node.id and not n.deleted), key=lambda n: n.name)
        offset = int(rec.query.get("$skiptoken", ["0"])[0])
        page = [self._render(drive, self._plain(drive, n), _select(rec)) for n in kids[offset:offset + self.page_size]]
        body = {"@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(driveItem)", "value": page}
        if offset + self.page_size < len(kids):
            body["@odata.nextLink"] = (f"{self.base_url}/v1.0/drives/{drive.id}/items/{node.id}/children"
                                       f"?$skiptoken={offset + self.page_size}")
        h.send_json(200, body)

    def _content(self, h, rec, drive_id: str, item_id: str) -> None:
        drive, node = self._node(h, rec, drive_id, item_id)
        if node is None:
            return
        h.send_empty(302, {"Location": self._mint(drive, node)})

    def _download(self, h, rec: Record) -> None:
        """The download host: the current bytes of the item a URL was minted for, with
        its eTag as ETag, `Range` (and `If-Range`: a validator that no longer matches
        gets the whole new body, 200) as RFC 9110 has it."""
        tempauth = rec.query.get("tempauth", [""])[0]
        found = self.downloads.get(tempauth)
        if found is None:
            status = self.expired.get(tempauth, 401)
            if status == 404:
                return h.send_json(404, {"error": {"code": "-2130575338", "message": "File Not Found."}})
            return h.send_json(status, {"error": {"code": "-2147024891, System.UnauthorizedAccessException",
                                                  "message": {"lang": "en-US", "value": "Access denied."}}})
        self.flight.enter()
        try:
            if self.before_download is not None:
                self.before_download(found[1])  # may edit or delete the item: this answer sees it
            self._serve(h, rec, tempauth, found)
        finally:
            self.flight.leave()

    def _serve(self, h, rec: Record, tempauth: str, found) -> None:
        drive, item_id = found
        with drive.lock:
            node = drive.nodes.get(item_id)
            if node is None or node.deleted:
                return h.send_json(404, {"error": {"code": "-2130575338", "message": "File Not Found."}})
            data, etag = self._damaged(item_id, node.served_bytes()), f'"{{{node.guid}}},{node.version}"'
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", rec.headers.get("range", ""))
        if_range = rec.headers.get("if-range")
        if ranged and int(ranged.group(1)) < len(data) and (if_range in (None, etag) or self.ignore_if_range):
            start = int(ranged.group(1))
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": etag}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        with self.lock:
            cut = self.cuts.pop(item_id, None)
            if cut is not None and self.cut_expires_url:
                self.downloads.pop(tempauth, None)
        h.send_bytes(206 if start else 200, memoryview(data)[start:], headers, cut_after=cut)

    def _damaged(self, item_id: str, data: bytes) -> bytes:
        """`data`, or (while `garble` asks for it) `data` with one byte flipped, at a
        place and in a way that differ from one damaged download to the next."""
        with self.lock:
            if not self.garble.get(item_id) or not data:
                return data
            self.garble[item_id] -= 1
            self.garbled += 1
            n = self.garbled
        damaged = bytearray(data)
        damaged[(n * 7919) % len(damaged)] ^= n % 255 + 1
        return bytes(damaged)


def _kind(method: str, path: str) -> str:
    if re.fullmatch(r"/[^/]+/v2\.0/\.well-known/openid-configuration", path):
        return "openid"
    if method == "POST" and re.fullmatch(r"/[^/]+/oauth2/v2\.0/token", path):
        return "token"
    if path.startswith("/v1.0/"):
        return "graph"
    if path.endswith("/_layouts/15/download.aspx"):
        return "download"
    return "other"


def _prefer(rec: Record) -> frozenset[str]:
    """The `Prefer` header's preferences (comma-separated, case-insensitive)."""
    return frozenset(p.strip().lower() for p in rec.headers.get("prefer", "").split(",") if p.strip())


def _select(rec: Record) -> list[str] | None:
    value = rec.query.get("$select", [None])[0]
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"MzslMjM0;{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(";")[1])
    except (ValueError, IndexError):
        return -1


def graph_error(code: str, message: str, rec: Record, inner_code: str | None = None) -> dict:
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": rec.request_id,
             "client-request-id": rec.headers.get("client-request-id", "")}
    if inner_code:
        inner["code"] = inner_code
    return {"error": {"code": code, "message": message, "innerError": inner}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, *, fake: FakeGraph, tls: ssl.SSLContext):
        self.fake = fake
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        """The TLS handshake happens here, in the connection's own thread: a client that
        rejects our certificate must not stall the accept loop."""
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(wrapped, client_address, self)
        finally:
            try:
                wrapped.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a client hanging up is not news
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server
    damage: str | None = None  # set per request by a damaging fault
    damage_headers: dict = {}

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.damage = None
        self.server.fake.handle(self, "GET")

    def do_POST(self):
        self.damage = None
        self.server.fake.handle(self, "POST")

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)

    def _head(self, status: int, headers: dict, length: int) -> str:
        rec = getattr(self, "record", None)
        request_id = rec.request_id if rec is not None else str(uuid.uuid4())
        if rec is not None:
            rec.status = status  # answered, even if the client hangs up before the body is through
        self.send_response(status)
        self.send_header("request-id", request_id)
        self.send_header("client-request-id", self.headers.get("client-request-id") or request_id)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        return request_id

    def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        if getattr(self, "record", None) is not None:
            self.record.body = body
        headers = {"Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;"
                                   "IEEE754Compatible=false;charset=utf-8", **(headers or {})}
        if self.damage is not None:
            return self._send_damaged(status, headers, data)
        self._head(status, headers, len(data))
        self.wfile.write(data)
        self.wfile.flush()
        self._done(status)

    def _send_damaged(self, status: int, headers: dict, data: bytes) -> None:
        """The answer as a damaging fault leaves it. `short` keeps all but the last 16
        bytes: a token response then still holds most of its access token, the part a
        client must never log."""
        headers = {**headers, **self.damage_headers}
        if self.damage == "garbage":
            headers["Content-Type"] = "text/html"
            sent, length = GARBAGE, len(GARBAGE)
        elif self.damage == "short":
            sent = data[:max(1, len(data) - 16)]
            length = len(sent)
        else:  # truncate
            sent, length = data[:len(data) // 2], len(data)
        self._head(status, headers, length)
        self.wfile.write(sent)
        self.wfile.flush()
        if self.damage == "truncate":
            self._hang_up()
        self._done(status)

    def _hang_up(self) -> None:
        """End the connection right after a deliberately incomplete answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset(self) -> None:
        """Drop the connection with a TCP RST before any byte of an answer (SO_LINGER 0
        on a detached descriptor, so nothing still holding the socket sends a FIN)."""
        self.close_connection = True
        try:
            raw = socket.socket(fileno=self.connection.detach())
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except OSError:
            pass

    def send_empty(self, status: int, headers: dict) -> None:
        self._head(status, headers, 0)
        self.wfile.flush()
        self._done(status)

    def send_bytes(self, status: int, data: memoryview, headers: dict, cut_after: int | None = None) -> None:
        self._head(status, headers, len(data))
        limit = len(data) if cut_after is None else min(cut_after, len(data))
        for start in range(0, limit, 1 << 20):
            self.wfile.write(data[start:min(start + (1 << 20), limit)])
        self.wfile.flush()
        if cut_after is not None:
            self._hang_up()
        self._done(status)

    def _done(self, status: int) -> None:
        rec = getattr(self, "record", None)
        if rec is not None:
            rec.status = status
            rec.ended = time.monotonic()
