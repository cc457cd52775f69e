"""The blob store on S3-compatible storage: `<prefix>/blobs/sha256/<2 hex>/<64 hex>`.

A key names its content, so a blob is written at most once and never changes:
- **Conditional writes**: `PutObject` with `If-None-Match: *`; a 412 means another
  instance (or an earlier job) stored the same content already. Nothing is overwritten,
  nothing is read back.
- **Stores without conditional writes** (older MinIO, Ceph, some appliances) either
  refuse the header or ignore it. `conditional_writes = "auto"` finds out once per
  instance with a probe (the same probe key written twice: the second must answer 412);
  where it does not, each write is a HEAD, then a PUT only when the key is missing. Two
  instances racing through that window both PUT the same bytes under the same name,
  which is harmless: content addressing makes the fallback safe, only less thrifty.
- **Streamed**: a file is uploaded from disk, never read whole; past `MULTIPART` bytes as
  a multipart upload (parts of `PART` bytes, one in memory at a time), completed with the
  same condition. Reads stream too (`open`), with byte ranges, for the API's content
  endpoint.
- **Sync-state snapshots**: a source's cursor (S3 listing state, Graph delta link) is
  saved as an immutable object named by its hash under `<prefix>/state/<source>/`, and
  the database's pointer to it moves only by compare-and-set on the fence
  (`leases.save_state`): a snapshot written by a fenced-out holder is never pointed at.
"""

from __future__ import annotations

import errno
import hashlib
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ingestd._lib import logs
from ingestd.config import ClusterConfig
from ingestd.credentials import Registry
from ingestd.errors import ConfigError, Unavailable

MULTIPART = 64 << 20  # larger files go up in parts
PART = 16 << 20  # S3's parts must be ≥ 5 MiB (but the last); 10,000 parts at most: 156 GiB
ATTEMPTS = 5


class BlobStoreError(Unavailable):
    """The blob store refused or failed a request (after retries), or was unreachable."""


@dataclass(frozen=True)
class Stored:
    key: str
    written: bool  # False: the content was there already


def client(cfg: ClusterConfig, registry: Registry | None):
    """A boto3 client for the blob store, with credentials as an S3 source takes them: a
    registry entry of type "aws" (keys) or "aws_profile", else the default chain (an
    instance role, the environment)."""
    import boto3
    from botocore.config import Config

    region = cfg.region or ("us-east-1" if cfg.endpoint_url else None)
    kwargs = {}
    if cfg.credentials is not None:
        if registry is None:
            raise ConfigError("cluster.credentials: names a registry entry but no credentials.registry is set")
        cred = registry.resolve(cfg.credentials)
        if cred.type == "aws":
            kwargs = {"aws_access_key_id": cred.require("access_key_id"),
                      "aws_secret_access_key": cred.require("secret_access_key"),
                      "aws_session_token": cred.get("session_token")}
        elif cred.type == "aws_profile":
            kwargs = {"profile_name": cred.require("profile")}
        else:
            raise ConfigError(f'cluster.credentials: entry {cfg.credentials!r} has type {cred.type!r}; the blob store '
                              'takes "aws" (access keys) or "aws_profile"')
    session = boto3.session.Session(region_name=region, **kwargs)
    settings = dict(region_name=region, retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
                    s3={"addressing_style": cfg.addressing_style}, tcp_keepalive=True, max_pool_connections=32)
    if cfg.endpoint_url:  # S3-compatible stores often refuse botocore's default CRC checksums
        settings.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return session.client("s3", endpoint_url=cfg.endpoint_url, config=Config(**settings))


class BlobStore:
    def __init__(self, s3, bucket: str, prefix: str = "", conditional: str = "auto"):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.mode = conditional  # "auto" | "on" | "off"
        self._conditional: bool | None = {"on": True, "off": False}.get(conditional)
        self.log = logs.get("ingestd.cluster.blobs")

    @classmethod
    def from_config(cls, cfg: ClusterConfig, registry: Registry | None) -> "BlobStore":
        return cls(client(cfg, registry), cfg.bucket, cfg.prefix, cfg.conditional_writes)

    def _path(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def key(self, sha256: str) -> str:
        if len(sha256) != 64 or sha256.strip("0123456789abcdef"):
            raise ValueError(f"not a sha256: {sha256[:80]!r}")
        return self._path("blobs", "sha256", sha256[:2], sha256)

    # -- conditional writes --------------------------------------------------------------

    @property
    def conditional(self) -> bool:
        """Whether this store honours `If-None-Match: *` (probed once, in "auto")."""
        if self._conditional is None:
            self._conditional = self._probe()
            self.log.info("blob store conditional writes", supported=self._conditional, bucket=self.bucket)
        return self._conditional

    def _probe(self) -> bool:
        key = self._path("probe", f"conditional-{uuid.uuid4().hex}")
        try:
            first = self._put_if_absent(key, b"probe")
            second = self._put_if_absent(key, b"probe")
            return first and not second  # the second write must have been refused
        except _Unsupported:
            return False
        finally:
            self._call("delete_object", Bucket=self.bucket, Key=key)

    def _put_if_absent(self, key: str, body, length: int | None = None) -> bool:
        """True: written; False: the key existed (412)."""
        from botocore.exceptions import ClientError

        extra = {"ContentLength": length} if length is not None else {}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
            return True
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            if status == 412 or code == "PreconditionFailed":
                return False
            if status == 409 and code == "ConditionalRequestConflict":
                return False  # a concurrent writer of the same key is completing: it will be there
            if status in (400, 501) and code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                raise _Unsupported(code) from None
            raise BlobStoreError(f"s3://{self.bucket}/{key}: {code or status}: "
                                 f"{exc.response.get('Error', {}).get('Message', '')}") from None

    # -- blobs ---------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self._exists(self.key(sha256))

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise BlobStoreError(f"s3://{self.bucket}/{key}: HEAD: {exc}") from None
        except BotoCoreError as exc:  # unreachable (refused, reset, timed out), after botocore's retries
            raise BlobStoreError(f"s3://{self.bucket}/{key}: HEAD: {exc}") from None

    def put_file(self, path: Path, sha256: str) -> Stored:
        """Store the file at `path` (whose hash the caller computed) under its hash."""
        key = self.key(sha256)
        size = path.stat().st_size
        if size > MULTIPART:
            if self._exists(key):  # a HEAD saves uploading what is there
                return Stored(key, False)
            return Stored(key, self._multipart(path, key))
        with open(path, "rb") as body:
            return Stored(key, self._put_stream(key, body, size))

    def put_bytes(self, data: bytes) -> Stored:
        sha256 = hashlib.sha256(data).hexdigest()
        key = self.key(sha256)
        return Stored(key, self._put_stream(key, data, len(data)))

    def _put_stream(self, key: str, body: BinaryIO | bytes, size: int) -> bool:
        if self.conditional:
            return self._put_if_absent(key, body, size)
        if self._exists(key):
            return False
        self._call("put_object", Bucket=self.bucket, Key=key, Body=body, ContentLength=size)
        return True

    def _multipart(self, path: Path, key: str) -> bool:
        upload = self._call("create_multipart_upload", Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts = []
            with open(path, "rb") as f:
                number = 1
                while chunk := f.read(PART):
                    etag = self._call("upload_part", Bucket=self.bucket, Key=key, UploadId=upload,
                                      PartNumber=number, Body=chunk)["ETag"]
                    parts.append({"PartNumber": number, "ETag": etag})
                    number += 1
            return self._complete(key, upload, parts)
        except BaseException:
            self._abort(key, upload)
            raise

    def _complete(self, key: str, upload: str, parts: list[dict]) -> bool:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if self.conditional else {}
        try:
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                              MultipartUpload={"Parts": parts}, **extra)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                self._abort(key, upload)
                return False
            raise BlobStoreError(f"s3://{self.bucket}/{key}: completing the upload: {exc}") from None

    def _abort(self, key: str, upload: str) -> None:
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except Exception:  # a lifecycle rule on the bucket should clean what is left
            self.log.warning("could not abort a multipart upload", key=key)

    def open(self, sha256: str, start: int | None = None, end: int | None = None):
        """The blob's bytes as a stream (`read(n)`, `iter_chunks()`), from `start` to `end`
        inclusive when given (an HTTP Range), and its length."""
        extra = {"Range": f"bytes={start or 0}-{'' if end is None else end}"} if start is not None or end else {}
        answer = self._call("get_object", Bucket=self.bucket, Key=self.key(sha256), **extra)
        return answer["Body"], answer["ContentLength"]

    def reader(self, sha256: str) -> "BlobReader":
        """The blob as a file the API's transport streams from (FileNotFoundError when the
        store does not hold it)."""
        if not self.exists(sha256):
            raise FileNotFoundError(errno.ENOENT, "no such blob in the store", sha256)
        return BlobReader(self, sha256)

    def read(self, sha256: str) -> bytes:
        body, _ = self.open(sha256)
        with body:
            return body.read()

    # -- sync-state snapshots ----------------------------------------------------------------

    def put_snapshot(self, source: str, data: bytes) -> str:
        """Store a source's state snapshot (immutable, named by its hash); its key."""
        key = self._path("state", source, hashlib.sha256(data).hexdigest())
        self._put_stream(key, data, len(data))
        return key

    def get_snapshot(self, key: str) -> bytes:
        return self._call("get_object", Bucket=self.bucket, Key=key)["Body"].read()

    def _call(self, operation: str, **params):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.s3, operation)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise BlobStoreError(f"s3://{self.bucket}/{params.get('Key', '')}: {operation}: {exc}") from None


class BlobReader(io.RawIOBase):
    """A blob read as the transport reads a file body (`socket.sendfile`'s fallback: a
    `seek` to where a Range starts, then `read`s): one GET from the position of the first
    read, streamed, never whole in memory. A failure mid-way is an OSError, which ends the
    response (the client sees a short body), never the server."""

    def __init__(self, store: BlobStore, sha256: str):
        super().__init__()
        self.store, self.sha256 = store, sha256
        self.position = 0
        self._body = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a blob in S3 has no file descriptor")  # sendfile() falls back to read()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        if offset != self.position:
            self._drop()
            self.position = offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        try:
            if self._body is None:
                self._body, _ = self.store.open(self.sha256, start=self.position or None)  # no Range: an empty blob
            data = self._body.read(None if size is None or size < 0 else size)
        except OSError:
            raise
        except Exception as exc:  # botocore's and urllib3's errors: to the transport, an I/O error
            raise OSError(errno.EIO, f"reading blob {self.sha256[:12]}: {exc}") from None
        self.position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            try:
                body.close()
            except Exception:  # noqa: BLE001 - a half-read stream may complain on close
                pass

    def close(self) -> None:
        self._drop()
        super().close()


class _Unsupported(Exception):
    """The store refused `If-None-Match` itself (not the write)."""
