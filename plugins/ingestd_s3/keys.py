"""What an S3 key means to ingestd: its origin URI, its path for filters, its file name.

Keys are untrusted text: `../../etc/passwd`, `a//b`, control characters. Nothing here
touches the filesystem; the downloader turns a key into a workspace path only through
`ingestd.paths.safe_join`, with a name that never depends on the key's folders.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote, unquote

# RFC 3986 pchar minus "+", which form decoders would read as a space
_URI_SAFE = "/!$&'()*,;=:@"
LEGACY_FOLDER_SUFFIX = "_$folder$"


def origin_uri(bucket: str, key: str) -> str:
    """`s3://bucket/key`, percent-encoded so that decoding the path gives the exact key.

    Dot segments are encoded too, so no URI resolver can fold `a/../b` into `b`.
    """
    path = quote(key, safe=_URI_SAFE)
    path = "/".join("%2E" * len(seg) if seg in (".", "..") else seg for seg in path.split("/"))
    return f"s3://{quote(bucket, safe='')}/{path}"


def key_of(uri: str) -> tuple[str, str]:
    """The inverse of `origin_uri`: (bucket, key)."""
    rest = uri.removeprefix("s3://")
    bucket, _, path = rest.partition("/")
    return unquote(bucket), unquote(path)


def relpath(key: str, prefix: str) -> str:
    """The key as filters see it: relative to the prefix, without a leading separator."""
    rest = key[len(prefix):]
    if prefix and not prefix.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    return rest


def is_folder_marker(key: str) -> bool:
    """Keys consoles and Hadoop tools create to fake folders. Empty, they hold no document;
    with bytes in them they do, whatever their name says."""
    return key.endswith("/") or key.endswith(LEGACY_FOLDER_SUFFIX)


def object_name(key: str) -> str | None:
    """The name an object's content is stored under (for MIME guessing): its file name,
    or for a key ending in `/` that holds bytes, its folder's name; None when the key
    names neither (`.`, `..`, `a/..`, `/`)."""
    if key.endswith("/"):
        key = key.rstrip("/")
    return file_name(key)


def file_name(key: str) -> str | None:
    """The key's last segment, used for MIME guessing; None when it names no file
    (`.`, `..`, `a/..`): such a key has no representation as a document name."""
    name = key.rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        return None
    return name


def is_utf8(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_time(value: datetime) -> str:
    """LastModified as UTC RFC 3339 at one-second precision.

    The listing gives milliseconds and a GET gives an HTTP date in whole seconds; state
    compares the two, so both are cut to the precision they share.
    """
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_etag(etag: str | None) -> str:
    """ETags arrive quoted (and sometimes weak-prefixed); the token compared is the inside."""
    etag = (etag or "").strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')
