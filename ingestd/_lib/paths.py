"""Turning untrusted names into paths that stay inside a root.

Every name that arrives from outside (a dropped file, an S3 key, a SharePoint item name,
an id in a URL) passes through here before it touches the filesystem. The functions are
pure except `safe_join`, which also looks at symlinks already on disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import quote

from ingestd.errors import Code, ConnectorError

MAX_NAME_BYTES = 200  # well under NAME_MAX (255) so suffixes added later still fit
MAX_DEPTH = 64
ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"  # job and document ids; the API validates with the same pattern
_ID_RE = re.compile(ID_PATTERN)
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _fold_surrogates(name: str) -> str:
    """Names decoded with surrogateescape carry lone surrogates; make them visible text."""
    if not any("\ud800" <= ch <= "\udfff" for ch in name):
        return name
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")  # the undecodable byte, as Python shows it
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def safe_name(name: str) -> str:
    """Map one untrusted path component to a safe, stable, bounded file name.

    Names that need no change map to themselves; a changed name gets a short hash of the
    original appended, so two different hostile names never collide.
    """
    return name if _plain(name) else _sanitise(name)


def _sanitise(name: str) -> str:
    original = name
    name = unicodedata.normalize("NFC", _fold_surrogates(name))
    name = _UNSAFE_CHARS.sub("_", name)
    name = "".join("_" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in name)
    if name.strip(".") == "":
        name = "_" * max(1, len(name))
    changed = name != original
    if changed or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        suffix = "~" + _digest(original)
        room = MAX_NAME_BYTES - len(suffix)
        name = name.encode("utf-8")[:room].decode("utf-8", "ignore") + suffix
    return name


def _plain(name: str) -> bool:
    """Printable ASCII with no separator, not all dots, not too long: safe_name's identity
    cases (NFC changes no ASCII, and ASCII holds no format or surrogate characters)."""
    return (name.isascii() and name.isprintable() and len(name) <= MAX_NAME_BYTES
            and "/" not in name and "\\" not in name and name.strip(".") != "")


def safe_parts(parts: list[str]) -> list[str]:
    """Sanitise a list of components, dropping the empty and `.` ones a key may carry."""
    kept = [p for p in parts if p not in ("", ".")]
    if not kept:
        raise ConnectorError(Code.INVALID_NAME, "name has no usable component")
    if len(kept) > MAX_DEPTH:
        raise ConnectorError(Code.INVALID_NAME, f"name is nested deeper than {MAX_DEPTH} levels")
    return [safe_name(p) for p in kept]


def safe_join(root: Path, *parts: str) -> Path:
    """Join sanitised `parts` under `root`, refusing any result that resolves outside it.

    The check is made on the real path of the parent, so a symlinked directory planted
    inside the root cannot carry a write elsewhere.
    """
    clean = safe_parts(list(parts))
    target = root.joinpath(*clean)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(target.parent)
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        raise ConnectorError(Code.INVALID_NAME, "name resolves outside its root")
    if target.is_symlink():
        raise ConnectorError(Code.INVALID_NAME, "name is an existing symlink")
    return target


def is_valid_id(value: str) -> bool:
    """Job and document ids: checked before any filesystem access."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def file_uri(path: str | os.PathLike[str]) -> str:
    """A `file://` URI for an absolute path, exact even for names that are not UTF-8."""
    raw = os.fsencode(os.path.abspath(path))
    return "file://" + quote(raw, safe="/")


def display(name: str) -> str:
    """A name safe to print in a log line or error: no control characters, bounded."""
    if len(name) <= 300 and name.isprintable():
        return name  # the common case, without the per-character walk
    text = _fold_surrogates(name)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else f"\\x{ord(ch):02x}" for ch in text)
    return text if len(text) <= 300 else text[:300] + "…"
