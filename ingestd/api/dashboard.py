"""The dashboard's static files (`ui/`, package data), and the headers they are served with.

The files are read once, as they are: no build step, no template, nothing fetched from
elsewhere. They are public (a browser must load the page before it can ask for a token);
the data the page shows comes from the JSON API and needs the token like any client.

The policy lets the page run only its own script and style, draw only its own images,
and talk only to this daemon; it cannot be framed (clickjacking the "ingest now" button),
and no inline script or style can run even if some data were ever rendered as markup.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources import files

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
POLICY = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
# the files are revalidated on each load (a 304 by ETag), so an upgrade shows at once
HEADERS = {**POLICY, "Cache-Control": "no-cache"}
TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    data: bytes
    content_type: str
    etag: str


@functools.cache
def asset(name: str) -> Asset:
    """One of the files named in TYPES (a KeyError for anything else)."""
    content_type = TYPES[name]
    data = (files("ingestd.api") / "ui" / name).read_bytes()
    return Asset(data, content_type, f'"{hashlib.sha256(data).hexdigest()[:32]}"')
