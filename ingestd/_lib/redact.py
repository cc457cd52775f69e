"""Keeps secret values out of every log line, manifest and error message.

Credential values are remembered when resolved; `scrub` replaces any remembered value
(and anything under a secret-looking key) before text leaves the process.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any

MASK = "***"
_SECRET_KEYS = re.compile(r"(secret|password|passwd|token|authorization|private_key|signature)", re.I)
_MIN_LEN = 6  # shorter values would mask ordinary words
_lock = threading.Lock()
_values: set[str] = set()


def remember(value: str) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _values.add(value)


def scrub_text(text: str) -> str:
    if not _values:
        return text
    for value in sorted(_values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_json_text(text: str) -> str:
    """`scrub_text` for JSON already written: a remembered value is masked as it is, and
    in its JSON-escaped form (a `"` or `\\` in a secret is written escaped)."""
    if not _values:
        return text
    for value in sorted(_values, key=len, reverse=True):
        for form in {value, json.dumps(value, ensure_ascii=False)[1:-1]}:
            if form in text:
                text = text.replace(form, MASK)
    return text


def scrub(obj: Any, key: str | None = None) -> Any:
    """Recursively scrub a JSON-like structure."""
    if key is not None and _secret_key(key) and isinstance(obj, (str, bytes)) and obj:
        return MASK
    if isinstance(obj, str):
        return scrub_text(obj) if _values else obj
    if isinstance(obj, dict):
        return {k: scrub(v, k if isinstance(k, str) else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None
