"""Bearer-token authentication for the status API.

The token lives in a file (not in ingestd.toml, which is often world-readable and kept in
version control). It is read at start and again on SIGHUP, so it can be rotated without a
restart, and compared in constant time so response timing reveals nothing about it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path

from ingestd._lib import logs, redact
from ingestd._lib.token_file import read_token


def _digest(value: str) -> bytes:
    # hashing first makes the comparison's length fixed, whatever the client sends
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class BearerAuth:
    """Checks `Authorization: Bearer …` against the token file's current contents."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._digest = self._load()
        self._log = logs.get("ingestd.http")

    def _load(self) -> bytes:
        token = read_token(self.path)
        redact.remember(token)  # never in a log line or a response, whatever happens
        return _digest(token)

    def reload(self) -> bool:
        """Re-read the token (on SIGHUP); on failure keep the old one and say why."""
        try:
            digest = self._load()
        except (ValueError, PermissionError) as exc:
            self._log.error("token file not reloaded; keeping the previous token", error=str(exc))
            return False
        with self._lock:
            self._digest = digest
        self._log.info("token file reloaded")
        return True

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            expected = self._digest
        return hmac.compare_digest(_digest(value.strip()), expected)
