"""A webhook sink's own keys in its `[[sinks]]` table."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ingestd.plugin import Duration, SecretPath, Strict
from ingestd.plugin.kit import read_private

SECRET_MIN = 16  # characters: a shorter key is guessable
SECRET_MAX = 4096
HOW_TO = "write one with e.g. `(umask 077; openssl rand -hex 32 > FILE)`"


class WebhookOptions(Strict):
    url: str = Field(max_length=2048)
    secret_file: SecretPath | None = None  # HMAC-SHA256 key: X-Ingestd-Signature; none: unsigned
    timeout: Duration = Field(default=10.0, gt=0, le=300)  # to connect, and for each read of the answer

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # the message never repeats the URL: it may carry a token in its query or user part
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError for a port out of range)
        except ValueError:
            raise ValueError("not a valid URL; write e.g. 'https://indexer.example/hooks/ingestd'") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry a user or password (user:pass@host): use secret_file to authenticate")
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("secret_file")
    @classmethod
    def _secret_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                read_secret(value)
            except PermissionError:
                pass  # another user's `check-config`: the daemon reads it again when the sink starts
        return value


def read_secret(path: Path) -> bytes:
    """The signing key in `path` (surrounding whitespace dropped), or ValueError saying
    what is wrong and how to fix it. Never says anything about the key's bytes."""
    try:
        raw = read_private(path, SECRET_MAX)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found; {HOW_TO}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except PermissionError:
        raise
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    secret = raw.strip()
    if len(secret) < SECRET_MIN:
        raise ValueError(f"{path}: the secret must be at least {SECRET_MIN} characters; {HOW_TO}")
    return secret
