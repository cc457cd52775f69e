"""The credential registry: a JSON file mapping names to credentials.

Sources name a credential instead of holding secrets, so `ingestd.toml` can be world-
readable and rotation is a file edit: values are resolved each time a job needs them.
A value is written inline, as `{"env": "VAR"}`, or as `{"file": "/path"}`; a file path
may use `${CREDENTIALS_DIRECTORY}` so systemd's `LoadCredential=` works unchanged.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ingestd._lib import redact
from ingestd.errors import Code, ConfigError, ConnectorError

MAX_REGISTRY_BYTES = 1 << 20


@dataclass(frozen=True)
class Credential:
    """A resolved credential: its `type` and fields, every field value a SecretStr."""

    name: str
    type: str
    fields: dict[str, SecretStr]

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
            secret = self._value(name, key, value)
            redact.remember(secret)
            fields[key] = SecretStr(secret)
        return Credential(name=name, type=entry["type"], fields=fields)

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            raise ConfigError("credentials.registry: not set; add [credentials] registry = \"/etc/ingestd/credentials.json\"")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: credential registry not found (credentials.registry)") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(st.st_mode)
            raise ConfigError(
                f"{self.path}: permissions {mode:04o} are too open; the registry holds secrets: "
                f"run chmod 600 {self.path}"
            )
        if st.st_size > MAX_REGISTRY_BYTES:
            raise ConfigError(f"{self.path}: credential registry larger than 1 MiB")
        try:
            data = json.loads(Path(self.path).read_bytes())
        except json.JSONDecodeError as exc:
            # the message names only the position: a JSON error must not quote a secret
            raise ConfigError(f"{self.path}:{exc.lineno}:{exc.colno}: invalid JSON") from None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: must be a JSON object mapping names to credentials")
        return data

    def _value(self, name: str, key: str, value: Any) -> str:
        where = f'{self.path}: "{name}": {key}'
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) == {"env"}:
            var = value["env"]
            if var not in os.environ:
                raise ConfigError(f"{where}: environment variable {var} is not set")
            return os.environ[var]
        if isinstance(value, dict) and set(value) == {"file"}:
            path = Path(_expand(str(value["file"])))
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
        raise ConfigError(f'{where}: must be a string, {{"env": "VAR"}} or {{"file": "/path"}}')


def _expand(path: str) -> str:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if "${CREDENTIALS_DIRECTORY}" in path:
        if not creds:
            raise ConfigError(f"{path}: ${{CREDENTIALS_DIRECTORY}} is not set (not running under systemd LoadCredential=?)")
        path = path.replace("${CREDENTIALS_DIRECTORY}", creds)
    return path
