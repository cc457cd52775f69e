"""Fetching one object into the job workspace: streamed in bounded chunks, hashed on
the way, so core can move the file into the blob store without reading it again.

The token recorded is the one of the bytes actually received (the GET's own ETag, size
and LastModified), not the listing's: an object replaced between list and get is then
ingested as the version it now is, and the next run sees nothing new.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from pathlib import Path

from ingestd.errors import Code, ConnectorError, io_error_code
from ingestd.plugin import Failed, Progress, Staged
from ingestd.plugin.kit import safe_parts, unlink_quietly

from . import lean
from .keys import canonical_time, is_folder_marker, object_name, origin_uri, plain_etag
from .objects import Listed, Token
from .remote import RemoteError, translate

CHUNK = 1 << 20
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


class _Stopped(Exception):
    pass


class _TooLarge(Exception):
    pass


class Fetcher:
    """Downloads objects of one bucket for one job; `fetch` runs in pool threads."""

    def __init__(self, client, bucket: str, workspace: Path, *, limit: int | None, min_age: float,
                 stop: threading.Event, abort: threading.Event, progress: Progress | None = None):
        self.client = client
        self.bucket = bucket
        self._get = lean.getter(client, bucket)
        self.workspace = workspace
        self.limit = limit
        self.min_age = min_age
        self._stop = stop
        self._abort = abort
        self._progress = progress  # told each chunk's bytes: core does not count an owned file's

    def abort(self) -> None:
        """Make in-flight fetches give up at their next chunk (the job is ending)."""
        self._abort.set()

    def stopped(self) -> bool:
        return self._stop.is_set() or self._abort.is_set()

    def fetch(self, obj: Listed, seq: int) -> Staged | Failed | None:
        """The event for one object, or None when there is nothing to report (gone since
        the listing, replaced by a version younger than `min_age`, or the job stopping)."""
        if self.stopped():
            return None
        uri = origin_uri(self.bucket, obj.key)
        path = self._path(obj.key, seq)
        try:
            response = self._get(obj.key)
        except Exception as exc:
            return self._refused(exc, uri, obj)
        body = response["Body"]
        try:
            got = self._token(obj, response)
            if got.etag != obj.etag and self._too_young(response):
                return None
            return self._receive(obj, uri, path, body, got, response)
        finally:
            body.close()

    def _path(self, key: str, seq: int) -> Path:
        """A fresh file directly in the workspace: one sanitised component, unique by `seq`.

        The key's folders are not mirrored: `a//b` and `a/b` would collide, and one flat
        directory needs no per-object mkdir or symlink walk. `safe_parts` turns the name
        into a single component that is never `.`, `..` or contains a separator, and the
        file is created with O_EXCL | O_NOFOLLOW, so it can only land in the workspace.
        """
        return self.workspace / safe_parts([f"{seq}-{object_name(key)}"])[0]

    def _refused(self, exc: Exception, uri: str, obj: Listed) -> Failed | None:
        err = translate(exc, f"GET {uri}")
        if err is None:
            raise exc
        if isinstance(err, RemoteError) and err.bad_credentials:
            raise err  # every other request would fail the same way: the job stops
        if err.code == Code.NOT_FOUND:
            return None  # deleted since the listing; the next listing records that
        archived = err.code == Code.UNAVAILABLE  # a standing condition, not worth a partial job
        return Failed(uri, err.code, err.message, skip=archived, request_id=err.request_id, token=obj.key)

    def _token(self, obj: Listed, response: dict) -> Token:
        etag = plain_etag(response.get("ETag"))
        if etag == obj.etag:
            return obj.token
        modified = response.get("LastModified")
        return Token(obj.key, etag, int(response.get("ContentLength", -1)),
                     canonical_time(modified) if modified else "", response.get("VersionId"))

    def _too_young(self, response: dict) -> bool:
        modified = response.get("LastModified")
        return bool(self.min_age and modified and time.time() - modified.timestamp() < self.min_age)

    def _receive(self, obj: Listed, uri: str, path: Path, body, got: Token, response: dict):
        try:
            sha, size = self._stream(body, path)
        except _Stopped:
            unlink_quietly(path)
            return None
        except _TooLarge:
            unlink_quietly(path)
            return Failed(uri, Code.TOO_LARGE, f"larger than max_object_size {self.limit}", skip=True, token=obj.key)
        except OSError as exc:
            unlink_quietly(path)
            remote = translate(exc, f"GET {uri}")  # botocore's read timeout is an OSError too
            if remote is not None:
                return Failed(uri, remote.code, remote.message, request_id=remote.request_id, token=obj.key)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ConnectorError(Code.DISK_FULL, f"workspace full while fetching {uri}") from None
            return Failed(uri, io_error_code(exc), f"workspace: {exc.strerror or exc}", token=obj.key)
        except Exception as exc:
            unlink_quietly(path)
            err = translate(exc, f"GET {uri}")
            if err is None:
                raise
            return Failed(uri, err.code, err.message, request_id=err.request_id, token=obj.key)
        if size != got.size:
            unlink_quietly(path)
            return Failed(uri, Code.TRANSIENT, f"GET {uri}: received {size} of {got.size} bytes", token=obj.key)
        version = response.get("VersionId") or got.version_id
        token = Token(got.key, got.etag, got.size, got.modified, version)
        metadata = {
            "bucket": self.bucket, "key": obj.key, "etag": got.etag, "last_modified": got.modified,
            "version_id": version, "storage_class": obj.storage_class or "STANDARD",
            "content_type": response.get("ContentType"),
        }
        if is_folder_marker(obj.key):
            metadata["folder_marker"] = True  # a key named like a folder that holds a document
        return Staged(
            origin_uri=uri, path=path, name=object_name(obj.key) or path.name, owned=True, sha256=sha, size=size,
            source_modified_at=got.modified or None, max_size=self.limit, token=token, metadata=metadata,
        )

    def _stream(self, body, path: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        fd = os.open(path, _FILE_FLAGS, 0o640)
        try:
            for chunk in body.iter_chunks(CHUNK):
                if self.stopped():
                    raise _Stopped
                size += len(chunk)
                if self.limit is not None and size > self.limit:
                    raise _TooLarge
                digest.update(chunk)
                _write_all(fd, chunk)
                if self._progress is not None:
                    self._progress.advance(bytes=len(chunk))
        finally:
            os.close(fd)
        return digest.hexdigest(), size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

