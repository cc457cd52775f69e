"""How a document's bytes are named when they are handed out: `Content-Disposition`.

The name comes from the document's origin (the last segment of its URI), which a source
controls entirely: it may hold quotes, semicolons, CR/LF, NUL, path separators, non-ASCII
or right-to-left overrides. So the header carries two forms (RFC 6266): `filename*`, the
name percent-encoded as UTF-8 (RFC 8187), which every current client reads, and an
ASCII-only `filename` fallback in which anything that could end the value, split the
header or name a path is replaced. Neither can leave the quoted value or the header line.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote, urlsplit

MAX_NAME = 200  # characters kept of a name: a header needs no more, and a client's file system takes it
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._()+,=@ -]")


def disposition(origin_uri: str, fallback: str) -> str:
    """`attachment; filename="…"; filename*=UTF-8''…` for the document at `origin_uri`
    (`fallback`, e.g. the document id, when the origin has no usable name)."""
    name = file_name(origin_uri) or fallback
    ascii_name = _UNSAFE_ASCII.sub("_", unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode())
    ascii_name = ascii_name.strip(" .") or fallback
    encoded = quote(name.encode("utf-8", "replace"), safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def file_name(origin_uri: str) -> str:
    """The last segment of the origin's path, decoded, with control characters and path
    separators taken out; empty when there is none."""
    try:
        path = urlsplit(origin_uri).path or origin_uri
    except ValueError:
        path = origin_uri
    last = unquote(path.rstrip("/").rpartition("/")[2], errors="replace")
    cleaned = "".join(c for c in last if unicodedata.category(c)[0] != "C" and c not in "/\\")
    return cleaned.strip()[:MAX_NAME]
