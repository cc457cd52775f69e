"""Keeps secret values out of free text: log messages and error messages.

Only values that are secret are remembered: credential fields declared secret, the API
token, keys a connector obtains at run time (the AWS default chain, STS, Entra tokens).
Masking applies to free text only. Records (manifests, items files, document records,
API bodies) keep their names, ids, origins and outcomes exactly as written: a secret
must never reach them, and masking must never rewrite them. Free text is masked where it
is made, before any encoding (a JSON-escaped secret would no longer match).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import deque
from typing import Any

MASK = "***"
WHOLE_WORD_BELOW = 8  # shorter secrets are masked only as a whole token, never inside words
HEAD = 8  # a run of a secret's first characters this long is masked where the text was cut
TAIL_HEAD = 4  # at the very end of a text (where cuts happen) even a shorter head is masked
ROTATING_KEEP = 2  # per slot: the current value and the one it replaced
FREE_TEXT_KEYS = frozenset({"message", "detail", "reason", "remediation"})  # in records, the only strings masked

# In log lines every string is masked except these: ids and provenance stay readable.
_STRUCTURED_LOG_KEYS = frozenset({
    "timestamp", "level", "logger", "job_id", "source", "doc_id", "origin_uri", "item", "kind", "trigger",
    "status", "outcome", "code", "sha256", "mime", "method", "route", "client", "version", "pid",
})
_SECRET_KEY = re.compile(r"(secret|password|passwd|passphrase|token|authorization|private_key|signature)", re.I)
_NOT_A_VALUE = re.compile(r"_(file|path|id|name|count|url|type)s?$", re.I)  # `token_file` names a file

_lock = threading.Lock()
_permanent: set[str] = set()
_rotating: dict[str, deque[str]] = {}
_values: tuple[str, ...] = ()  # longest first: a secret containing another is masked whole


def remember(value: str | None, *, slot: str | None = None) -> None:
    """Mask `value` in free text from now on. With `slot`, only the newest values of that
    slot are kept (a token renewed every hour would otherwise grow the set for ever)."""
    if not value or not value.strip():
        return
    global _values
    with _lock:
        if slot is None:
            _permanent.update(_variants(value))
        else:
            kept = _rotating.setdefault(slot, deque(maxlen=ROTATING_KEEP))
            if value not in kept:
                kept.append(value)
        everything = set(_permanent).union(*_rotating.values())
        _values = tuple(sorted(everything, key=len, reverse=True))


def _variants(value: str) -> set[str]:
    """The value, and the value as `Path()` would print it (`//` folded, trailing `/` cut)."""
    folded = re.sub(r"/{2,}", "/", value).rstrip("/")
    return {value, folded} if folded and folded != value else {value}


def size() -> int:
    return len(_values)


def reset() -> None:
    """Forget every value (tests: one test's secrets must not mask the next one's words)."""
    global _values
    with _lock:
        _permanent.clear()
        _rotating.clear()
        _values = ()


def scrub_text(text: str) -> str:
    """`text` with every remembered secret masked, including a secret's head where the
    text was cut short (a message truncated to 300 characters mid-secret)."""
    values = _values
    if not values or not text:
        return text
    for value in values:  # whole values first, longest first, so a variant is masked whole
        if value in text:
            text = _whole_word(value).sub(MASK, text) if len(value) < WHOLE_WORD_BELOW else text.replace(value, MASK)
    for value in values:  # then what is left of a secret where the text was cut
        if len(value) >= WHOLE_WORD_BELOW:
            if value[:HEAD] in text:
                text = _mask_heads(text, value)
            text = _mask_cut_end(text, value)
    return text


@functools.lru_cache(maxsize=1024)
def _whole_word(value: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])")


def _mask_heads(text: str, value: str) -> str:
    """Mask each run of text that matches `value` from its start for at least HEAD
    characters: the whole value, or what is left of it where the text ends or was cut."""
    out, pos, head = [], 0, value[:HEAD]
    while (start := text.find(head, pos)) >= 0:
        end = start + HEAD
        limit = min(len(text), start + len(value))
        while end < limit and text[end] == value[end - start]:
            end += 1
        out += [text[pos:start], MASK]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _mask_cut_end(text: str, value: str) -> str:
    """A text cut inside a secret's first characters ends with what is left of it."""
    body = text.rstrip("…")
    for n in range(min(HEAD, len(value)) - 1, TAIL_HEAD - 1, -1):
        if body.endswith(value[:n]):
            return body[:-n] + MASK + text[len(body):]
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
    """A record (manifest, item, API body) with its free text masked: only strings under
    `message`-like keys change; names, ids, origins and outcomes never do."""
    if isinstance(obj, dict):
        return {k: scrub(v, k) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, key) for v in obj]
    if isinstance(obj, str) and key in FREE_TEXT_KEYS:
        return scrub_text(obj)
    return obj


def scrub_log(event: dict[str, Any]) -> dict[str, Any]:
    """A log line: every string masked but ids and provenance; a value under a key that
    names a secret (`password=`, `client_secret=`) is masked whole."""
    return {k: _log_value(v, k) for k, v in event.items()}


def _log_value(value: Any, key: str | None) -> Any:
    if key is not None and _secret_key(key) and isinstance(value, (str, bytes)) and value:
        return MASK
    if isinstance(value, str):
        return value if key in _STRUCTURED_LOG_KEYS else scrub_text(value)
    if isinstance(value, dict):
        return {k: _log_value(v, k if isinstance(k, str) else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_log_value(v, None) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None and _NOT_A_VALUE.search(key) is None
