"""The contract between core and a sink plugin: something that pushes the change feed out.

Core owns everything a sink would otherwise get wrong: the sink's durable cursor, reading
the committed feed in cursor order, batching, filtering by source, retries with backoff,
and never losing a change. A sink only delivers one batch: `deliver(changes)` returns
once the batch is accepted downstream, and raises otherwise. The same batch (or one that
starts with it) comes again after a failure or a crash, so downstream must accept a
change it has seen before (each carries its `cursor`).

Register sink classes with the `register_sinks(register)` hook; a Kafka or NATS sink is a
third-party package in the `ingestd` entry-point group, like a connector.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from ingestd.config import Strict
from ingestd.credentials import Registry
from ingestd.errors import IngestdError

SINK_KINDS = r"^[a-z][a-z0-9_-]{0,31}$"


class DeliveryError(IngestdError):
    """A batch was not accepted. `code` is a short typed reason shown on `GET /sinks` and in
    metrics (`http_status`, `timeout`, `connection`, `rejected`, …); `message` is for the
    operator and must hold no secret (no signing key, no token, no URL with credentials)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Sink:
    """Base class of every sink. Subclass it, set `kind` and `Options`, implement
    `deliver`; `close` if you hold connections.

    Built once per configured sink (and again after a reload that changes it), used by
    one thread only: no locking needed. `__init__` may raise ConfigError (a secret file
    that cannot be read): the sink is then reported unavailable and does not run."""

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Strict

    def __init__(self, name: str, options: Any, registry: Registry | None = None):
        self.name = name
        self.options = options
        self.registry = registry

    def deliver(self, changes: list[dict[str, Any]]) -> None:
        """Hand `changes` (the objects of `GET /changes`, oldest first) downstream. Return
        only once they are accepted; raise (DeliveryError, or anything) when they are not,
        and they come again. Respect your own timeout: a call that never returns holds
        this sink (and only this sink) still."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called when the sink stops (shutdown, reload)."""


__all__ = ["DeliveryError", "SINK_KINDS", "Sink"]
