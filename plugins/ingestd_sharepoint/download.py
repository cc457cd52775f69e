"""One file's bytes from SharePoint into the job workspace: streamed, hashed, resumable.

The bytes come from a pre-authenticated download URL, fetched without our bearer token
(it needs none, and may be on another host): the one the listing gave
(`@microsoft.graph.downloadUrl`) while it is fresh, else the one `/items/{id}/content`
redirects to. A URL the download host refuses (401/403/404: they expire) is replaced
by asking `/content` for a new one.

The body is written a chunk at a time while sha256 (for the store) and quickXorHash
(to compare with Graph's) are computed, so memory stays flat whatever the file size. A
connection dropped mid-file is resumed with `Range` and `If-Range` carrying the first
response's ETag; a 206 from another version of the file (its ETag differs) is refused
and the download starts over, so two versions are never spliced together. Whether the
bytes are the ones the listing describes is decided elsewhere (`retrieve`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import unlink_quietly
from ingestd.plugin.kit.throttle import Stopped

from .http import graph_error, request_id, where
from .quickxor import QuickXorHash

CHUNK = 256 * 1024  # a dropped connection loses at most this much of what was read
MAX_RESUMES = 3
REDIRECTS = (301, 302, 303, 307, 308)
REFUSED = (401, 403, 404)  # what the download host answers for a URL past its time


@dataclass(frozen=True)
class Source:
    """Where an item's bytes can be had: `/content` always, the listed URL if fresh."""

    content_url: str
    listed_url: str | None = None

    def __repr__(self) -> str:  # the listed URL carries a tempauth token
        return f"Source({where(self.content_url)}, listed={self.listed_url is not None})"


@dataclass
class Fetched:
    path: Path
    sha256: str
    size: int
    qxh: str  # quickXorHash of the bytes, base64 as Graph gives it
    etag: str | None  # of the response the bytes came from
    request_id: str | None
    resumed: int = 0
    content_calls: int = 0  # `/content` requests it took (0: the listed URL served it)


class _Sink:
    """The workspace file plus the hashes of what has been written to it."""

    def __init__(self, path: Path, progress=None):
        self.path = path
        self.progress = progress  # told each chunk's bytes: core does not count an owned file's
        self.fh = open(path, "wb")
        self.restart()
        self.resumed = 0
        self.content_calls = 0

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.sha256 = hashlib.sha256()
        self.qxh = QuickXorHash()
        self.size = 0
        self.etag: str | None = None  # of the response the bytes so far came from
        self.request_id: str | None = None

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.sha256.update(chunk)
        self.qxh.update(chunk)
        self.size += len(chunk)
        if self.progress is not None:
            self.progress.advance(bytes=len(chunk))

    def close(self) -> None:
        self.fh.close()

    def result(self) -> Fetched:
        return Fetched(self.path, self.sha256.hexdigest(), self.size, self.qxh.b64digest(), self.etag,
                       self.request_id, self.resumed, self.content_calls)


def fetch(http, source: Source, dest: Path, limit: int | None, progress=None) -> Fetched:
    """Download to `dest`, telling `progress` the bytes as they come; raise
    ConnectorError (the file removed) on any failure."""
    sink = _Sink(dest, progress)
    try:
        _fetch_into(http, source, sink, limit)
        sink.close()
        return sink.result()
    except BaseException:
        sink.close()
        unlink_quietly(dest)
        raise


class _UrlRefused(Exception):
    """The pre-authenticated URL was refused (it expires after a while)."""


class _Restart(Exception):
    """The server answered a resume from another version of the file."""


def _fetch_into(http, source: Source, sink: _Sink, limit: int | None) -> None:
    """Stream from the first URL that works: the listed one, then up to two from
    `/content` (a large file can outlast a URL part way)."""
    refused = None
    for url, auth in _urls(http, source, sink):
        try:
            return _stream(http, url, auth, sink, limit)
        except _UrlRefused as exc:
            refused = exc
    raise ConnectorError(Code.TRANSIENT, f"the download URL for {where(source.content_url)} was refused "
                         f"({refused}) again", retryable=True)


def _urls(http, source: Source, sink: _Sink) -> Iterator[tuple[str, bool]]:
    if source.listed_url:
        yield source.listed_url, False
    for _ in (1, 2):
        sink.content_calls += 1
        yield _locate(http, source.content_url)


def _locate(http, content_url: str) -> tuple[str, bool]:
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


def _stream(http, source: str, auth: bool, sink: _Sink, limit: int | None) -> None:
    import requests

    refused = () if auth else REFUSED
    while True:
        resp = http.request("GET", source, auth=auth, stream=True, headers=_resume_headers(sink), accept=refused)
        try:
            if resp.status_code in refused:
                raise _UrlRefused(resp.status_code)
            _check_start(resp, sink, source)
            for chunk in resp.iter_content(CHUNK):
                sink.write(chunk)
                if limit is not None and sink.size > limit:
                    raise ConnectorError(Code.TOO_LARGE, f"larger than max_file_size {limit}")
                if http.stop.is_set():
                    raise Stopped("stopping")
            return
        except _Restart:
            sink.restart()
            _count_resume(sink, source, "a resume was answered from another version of the file")
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as exc:
            _count_resume(sink, source, type(exc).__name__)
        finally:
            resp.close()


def _count_resume(sink: _Sink, source: str, why: str) -> None:
    if sink.resumed >= MAX_RESUMES:
        raise ConnectorError(Code.TRANSIENT, f"download from {where(source)} kept failing ({why}) after "
                             f"{sink.resumed} resumes", retryable=True) from None
    sink.resumed += 1


def _resume_headers(sink: _Sink) -> dict:
    """`Range` from where the bytes stop, valid only for the version they came from
    (`If-Range`). Without an ETag to hold the server to, start over instead."""
    if sink.size and sink.etag:
        return {"Range": f"bytes={sink.size}-", "If-Range": sink.etag}
    if sink.size:
        sink.restart()
    return {}


def _check_start(resp, sink: _Sink, source: str) -> None:
    """Accept a full body (starting over) or a partial one of the same version
    starting where we stopped."""
    etag = resp.headers.get("ETag")
    if resp.status_code == 200:
        if sink.size:
            sink.restart()  # the server ignored Range, or the file changed (If-Range): the whole body
        sink.etag, sink.request_id = etag, request_id(resp)
        return
    if resp.status_code == 206:
        first = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").split("-", 1)[0]
        if not (first.isdigit() and int(first) == sink.size):
            raise ConnectorError(Code.TRANSIENT, f"{where(source)} resumed at the wrong offset", retryable=True)
        if etag is None or etag != sink.etag:
            raise _Restart()
        sink.request_id = request_id(resp)
        return
    raise graph_error(resp, "GET", source)


