"""One file from SharePoint into the job workspace: streamed, hashed, verified.

`/items/{id}/content` answers with a redirect to a short-lived, pre-authenticated
download URL; that URL is fetched without our bearer token (it needs none, and may be
on another host). The body is written a chunk at a time while sha256 (for the store)
and quickXorHash (to check against Graph's) are computed, so memory stays flat whatever
the file size. A connection dropped mid-file is resumed with a `Range` request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import unlink_quietly
from ingestd.plugin.kit.throttle import Stopped

from .http import graph_error, request_id, where
from .items import Item
from .quickxor import QuickXorHash

CHUNK = 256 * 1024  # a dropped connection loses at most this much of what was read
MAX_RESUMES = 3
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Fetched:
    sha256: str
    size: int
    resumed: int = 0


class _Sink:
    """The workspace file plus the hashes of what has been written to it."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, "wb")
        self.restart()

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.sha256 = hashlib.sha256()
        self.qxh = QuickXorHash()
        self.size = 0
        self.request_id: str | None = None  # of the response the bytes came from

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.sha256.update(chunk)
        self.qxh.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        self.fh.close()


def fetch(http, content_url: str, item: Item, dest: Path, limit: int | None) -> Fetched:
    """Download `item` to `dest`; raise ConnectorError (the file removed) on any failure."""
    sink = _Sink(dest)
    try:
        resumed = _fetch_into(http, content_url, sink, limit)
        sink.close()
        _verify(sink, item)
        return Fetched(sink.sha256.hexdigest(), sink.size, resumed)
    except BaseException:
        sink.close()
        unlink_quietly(dest)
        raise


class _UrlRefused(Exception):
    """The pre-authenticated URL was refused (it expires after a while)."""


def _fetch_into(http, content_url: str, sink: _Sink, limit: int | None) -> int:
    """Stream through the download URL, asking `/content` for a fresh one once if the
    first is refused part way (it is short-lived; a large file can outlast it)."""
    for attempt in (1, 2):
        source, auth = _locate(http, content_url)
        try:
            return _stream(http, source, auth, sink, limit)
        except _UrlRefused as refused:
            if attempt == 2:
                raise ConnectorError(Code.TRANSIENT, f"the download URL for {where(content_url)} was refused "
                                     f"({refused}) twice", retryable=True) from None
    raise AssertionError("unreachable")


def _locate(http, content_url: str):
    """The URL the bytes come from (the redirect target), and whether it needs our token."""
    resp = http.request("GET", content_url, stream=True)
    try:
        if resp.status_code not in REDIRECTS:
            return content_url, True  # served directly
        location = resp.headers.get("Location") or ""
    finally:
        resp.close()
    if urlsplit(location).scheme != "https":
        raise ConnectorError(Code.TRANSIENT, f"{where(content_url)} redirected to a non-https download URL",
                             retryable=True)
    return location, False


def _stream(http, source: str, auth: bool, sink: _Sink, limit: int | None) -> int:
    import requests

    refused = () if auth else (401, 403)
    resumed = 0
    while True:
        headers = {"Range": f"bytes={sink.size}-"} if sink.size else {}
        resp = http.request("GET", source, auth=auth, stream=True, headers=headers, accept=refused)
        try:
            if resp.status_code in refused:
                raise _UrlRefused(resp.status_code)
            _check_start(resp, sink, source)
            sink.request_id = request_id(resp)
            for chunk in resp.iter_content(CHUNK):
                sink.write(chunk)
                if limit is not None and sink.size > limit:
                    raise ConnectorError(Code.TOO_LARGE, f"larger than max_file_size {limit}")
                if http.stop.is_set():
                    raise Stopped("stopping")
            return resumed
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as exc:
            if resumed >= MAX_RESUMES:
                raise ConnectorError(Code.TRANSIENT, f"download from {where(source)} kept failing "
                                     f"({type(exc).__name__}) after {resumed} resumes", retryable=True) from None
            resumed += 1
        finally:
            resp.close()


def _check_start(resp, sink: _Sink, source: str) -> None:
    """Accept a full body (starting over) or a partial one starting where we stopped."""
    if resp.status_code == 200:
        if sink.size:
            sink.restart()  # the server ignored Range: take the whole body again
        return
    if resp.status_code == 206:
        first = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").split("-", 1)[0]
        if first.isdigit() and int(first) == sink.size:
            return
        raise ConnectorError(Code.TRANSIENT, f"{where(source)} resumed at the wrong offset", retryable=True)
    raise graph_error(resp, "GET", source)


def _verify(sink: _Sink, item: Item) -> None:
    """Size, then quickXorHash, then sha256 (where Graph gives them) against what arrived."""
    problem = None
    if item.size is not None and sink.size != item.size:
        problem = f"downloaded {sink.size} bytes but Graph reports size {item.size}"
    elif item.qxh and sink.qxh.b64digest() != item.qxh:
        problem = f"quickXorHash of the downloaded bytes is {sink.qxh.b64digest()}, Graph reports {item.qxh}"
    elif item.sha256 and sink.sha256.hexdigest() != item.sha256.lower():
        problem = "sha256 of the downloaded bytes differs from Graph's sha256Hash"
    if problem:
        raise ConnectorError(Code.INTEGRITY, problem, request_id=sink.request_id)

