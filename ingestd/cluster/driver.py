"""Reaching PostgreSQL: the optional driver, the password from the registry, connections
that notice a dead peer.

The driver is psycopg 3, pure Python on the system's libpq (Debian: libpq5), not the
`psycopg[binary]` wheel: the wheel carries its own libpq and OpenSSL, which the
distribution's security updates never reach; a service on Debian should get those with
the rest of the system. The C speed-up the wheel brings is microseconds per query
against a network round trip per query. psycopg is LGPL-3.0, used as an unmodified
library (the `cluster` extra), which an MIT-licensed program may depend on.

Core never imports this module unless `[cluster]` is configured; with it configured and
the driver absent, the error names exactly what to install.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ingestd._lib import redact
from ingestd._lib.version import VERSION
from ingestd.config import ClusterConfig
from ingestd.credentials import Registry
from ingestd.errors import ConfigError

INSTALL = "pip install 'ingestd[cluster]'"
LIBPQ = "the PostgreSQL client library (Debian: apt-get install libpq5)"
CONNECT_TIMEOUT = 10  # seconds to set up a connection before giving up


def psycopg(where: str = "cluster") -> Any:
    """The psycopg module, or a ConfigError (exit 78: restarting cannot help) naming the fix."""
    try:
        import psycopg as module
    except ImportError as exc:
        if importlib.util.find_spec("psycopg") is None:
            raise ConfigError(f"{where}: cluster mode needs psycopg 3, which is not installed: {INSTALL}") from None
        raise ConfigError(f"{where}: psycopg is installed but cannot load libpq ({str(exc).splitlines()[0]}): "
                          f"install {LIBPQ}") from None
    return module


class Database:
    """How to connect, resolved once per instance: the URL from the config, the password
    (when the config names a registry entry) read from the registry each connect."""

    def __init__(self, cfg: ClusterConfig, registry: Registry | None, *, label: str = "cluster"):
        self.cfg = cfg
        self.registry = registry
        self.label = label
        self.driver = psycopg(label)

    def _password(self) -> str | None:
        name = self.cfg.database_credentials
        if name is None:
            return None  # libpq's own ways remain: ~/.pgpass, PGPASSFILE, peer or cert auth
        if self.registry is None:
            raise ConfigError(f"{self.label}: database_credentials names {name!r} but no credentials.registry is set")
        cred = self.registry.resolve(name)  # remembers (masks) every secret field
        if cred.type != "postgres":
            raise ConfigError(f'{self.label}: database_credentials: entry {name!r} has type {cred.type!r}; '
                              'a database password needs type "postgres"')
        return cred.require("password")

    def connect(self, *, autocommit: bool = False, purpose: str = "", **options):
        """A new connection. TCP keepalives and a user timeout make a peer that vanished
        (a host gone, a partition) an error within ~ttl/2 instead of a hang; what the kernel
        cannot see (a proxy that accepts and drops) the lease keeper catches."""
        ttl = self.cfg.lease_ttl
        settings: dict[str, Any] = {
            "application_name": f"ingestd {VERSION} {self.cfg.instance_id} {purpose}".strip()[:63],
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalives": 1, "keepalives_idle": max(1, int(ttl / 6)), "keepalives_interval": max(1, int(ttl / 10)),
            "keepalives_count": 3, "tcp_user_timeout": int(ttl * 500),
        }
        password = self._password()
        if password is not None:
            redact.remember(password)
            settings["password"] = password
        settings.update(options)
        try:
            return self.driver.connect(self.cfg.database_url, autocommit=autocommit, **settings)
        except self.driver.OperationalError as exc:
            raise DatabaseUnavailable(f"{self.label}: cannot connect to {describe(self.cfg.database_url)}: "
                                      f"{_first_line(exc)}") from None

    def describe(self) -> str:
        return describe(self.cfg.database_url)


class DatabaseUnavailable(ConfigError):
    """The database cannot be reached (or refused the login). A ConfigError for the CLI's
    one-line report; the daemon treats it as transient and retries."""

    exit_code = 69  # EX_UNAVAILABLE


def describe(url: str) -> str:
    """Where the URL points, for messages: host, port and database, never a password
    (the config refuses one in the URL; this holds even if one got there)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:  # a malformed URL: libpq says why when connecting
        return "the configured database (cluster.database_url)"
    host = parts.get("host") or "local socket"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"database {parts.get('dbname') or '(default)'} on {host}{port}"


def _first_line(exc: BaseException) -> str:
    return redact.scrub_text((str(exc).strip().splitlines() or ["no detail"])[0])
