"""The credential registry: a JSON file mapping names to credentials.

Sources name a credential instead of holding secrets, so `ingestd.toml` can be world-
readable and rotation is a file edit: values are resolved each time a job needs them.
A value is written inline, as `{"env": "VAR"}`, or as `{"file": "/path"}`; a file path
may use `${CREDENTIALS_DIRECTORY}` so systemd's `LoadCredential=` works unchanged.

Every field is secret (masked in log and error messages once resolved) unless it is one
of the identifiers below: masking a profile or tenant name would rewrite ordinary words
in every message that names them, and they protect nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ingestd._lib import credentials_dir, redact
from ingestd._lib.files import read_private
from ingestd.errors import Code, ConfigError, ConnectorError

# Identifiers, not secrets: shown in messages as they are. Any other field is secret.
PUBLIC_FIELDS = frozenset({
    "profile", "source_profile", "session_name", "role_arn", "external_id", "sts_endpoint_url", "region",
    "tenant_id", "client_id",
})

MAX_REGISTRY_BYTES = 1 << 20


@dataclass(frozen=True)
class Credential:
    """A resolved credential: its `type` and fields, every field value a SecretStr."""

    name: str
    type: str
    fields: dict[str, SecretStr]

    @property
    def secret_fields(self) -> frozenset[str]:
        return frozenset(k for k in self.fields if is_secret(k))

    def get(self, key: str) -> str | None:
        value = self.fields.get(key)
        return value.get_secret_value() if value is not None else None

    def require(self, key: str) -> str:
        value = self.get(key)
        if not value:
            raise ConnectorError(Code.AUTH, f"credential {self.name!r} has no {key!r}")
        return value

    def __repr__(self) -> str:  # never show values, even in a debugger dump
        return f"Credential(name={self.name!r}, type={self.type!r}, fields={sorted(self.fields)})"


class Registry:
    """Reads the registry file on every lookup; never caches secret values."""

    def __init__(self, path: Path | None):
        self.path = path

    def names(self) -> list[str]:
        return sorted(self._load())

    def resolve(self, name: str) -> Credential:
        entries = self._load()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise ConfigError(f"{self.path}: credential {name!r} is not defined (defined: {known})")
        entry = entries[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ConfigError(f'{self.path}: "{name}": type: field required (e.g. "aws", "azure_client_secret")')
        fields = {}
        for key, value in entry.items():
            if key == "type":
                continue
            resolved = self._value(name, key, value)
            if is_secret(key):
                redact.remember(resolved)
            fields[key] = SecretStr(resolved)
        return Credential(name=name, type=entry["type"], fields=fields)

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            raise ConfigError("credentials.registry: not set; add [credentials] registry = \"/etc/ingestd/credentials.json\"")
        text = _read_text(Path(self.path), str(self.path), private=True,
                          missing="credential registry not found (credentials.registry)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # the message names only the position: a JSON error must not quote a secret
            raise ConfigError(f"{self.path}:{exc.lineno}:{exc.colno}: invalid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: must be a JSON object mapping names to credentials")
        return data

    def _value(self, name: str, key: str, value: Any) -> str:
        """The field's value, whitespace trimmed whichever way it is written (a stray
        newline or space from an editor or `echo` would otherwise reach the signature)."""
        where = f'{self.path}: "{name}": {key}'
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, dict) and set(value) == {"env"}:
            var = value["env"]
            if not isinstance(var, str) or var not in os.environ:
                raise ConfigError(f"{where}: environment variable {var} is not set")
            return os.environ[var].strip()
        if isinstance(value, dict) and set(value) == {"file"}:
            return _read_secret_file(where, str(value["file"]), secret=is_secret(key))
        raise ConfigError(f'{where}: must be a string, {{"env": "VAR"}} or {{"file": "/path"}}')


def is_secret(field: str) -> bool:
    return field not in PUBLIC_FIELDS


def _read_secret_file(where: str, raw: str, *, secret: bool) -> str:
    """A `{"file": …}` value. A file holding a secret must be its owner's alone, as the
    registry must: anything else on the machine could read it."""
    try:
        path = Path(credentials_dir.expand(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: {raw}: {exc}") from None
    return _read_text(path, f"{where}: {path}", private=secret, missing="file not found").strip()


def _read_text(path: Path, prefix: str, *, private: bool, missing: str) -> str:
    """A file's text, or ConfigError(`prefix: what is wrong`); `private`: it must be
    readable by its owner alone."""
    try:
        data = read_private(path, MAX_REGISTRY_BYTES) if private else path.read_bytes()[:MAX_REGISTRY_BYTES]
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{prefix}: {missing}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{prefix}: not UTF-8 text") from None
    except ValueError as exc:
        raise ConfigError(f"{prefix}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{prefix}: cannot read: {exc.strerror}") from None
