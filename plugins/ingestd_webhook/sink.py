"""POST `{"changes": [...]}` to a URL, signed like GitHub's webhooks.

Headers: `X-Ingestd-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (with a
`secret_file`), `X-Ingestd-Delivery: <first cursor>..<last cursor>` (the same batch has the
same id when it comes again: a receiver may dedupe on it, or on each change's cursor),
`X-Ingestd-Sink: <name>`. Any 2xx accepts the batch; anything else, a timeout or a refused
connection raises, and core retries the same batch. Redirects are not followed (a 3xx is a
failure): a signed body is for the receiver that was configured, not wherever it points.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from ingestd.plugin import ConfigError, DeliveryError, Sink, __version__
from ingestd.plugin.kit import mask_secret

from .options import WebhookOptions, read_secret

ANSWER_MAX = 65536  # bytes of the receiver's answer read (and ignored)


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink(Sink):
    kind = "webhook"
    Options = WebhookOptions

    def __init__(self, name: str, options: WebhookOptions, registry=None):
        super().__init__(name, options, registry)
        self._secret = None
        if options.secret_file is not None:
            try:
                self._secret = read_secret(options.secret_file)
            except (ValueError, OSError) as exc:
                raise ConfigError(f"sinks {name!r}: secret_file: {exc}") from None
            mask_secret(self._secret.decode("utf-8", "replace"))
        parts = urlsplit(options.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = ssl.create_default_context() if self._https else None

    def deliver(self, changes: list[dict[str, Any]]) -> None:
        body = json.dumps({"changes": changes}, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"ingestd/{__version__}",
            "X-Ingestd-Delivery": f"{changes[0]['cursor']}..{changes[-1]['cursor']}",
            "X-Ingestd-Sink": self.name,
        }
        if self._secret is not None:
            headers["X-Ingestd-Signature"] = signature(self._secret, body)
        status = self._post(body, headers)
        if not 200 <= status < 300:
            raise DeliveryError("http_status", f"the receiver answered HTTP {status}"
                                + (" (redirects are not followed)" if 300 <= status < 400 else ""))

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        timeout = self.options.timeout
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(ANSWER_MAX)
            return response.status
        except http.client.HTTPException as exc:
            raise DeliveryError("protocol", f"the receiver's answer is not HTTP: {type(exc).__name__}") from None
        finally:
            conn.close()
