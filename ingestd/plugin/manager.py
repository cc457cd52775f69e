"""Loading plugins: entry points one by one, so one broken plugin is quarantined with a
reason instead of taking the daemon (or every other plugin) down with it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy
from pydantic import BaseModel, ConfigDict

from ingestd._lib import logs
from ingestd.plugin import spec
from ingestd.plugin.connector import Connector
from ingestd.plugin.sink import SINK_KINDS, Sink

GROUP = "ingestd"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    status: str = "loaded"  # loaded | quarantined
    error: str | None = None
    kinds: list[str] = field(default_factory=list)
    sink_kinds: list[str] = field(default_factory=list)


class _UncheckedSink(BaseModel):
    """Options of a sink whose plugin was quarantined: kept as written, unvalidated."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Plugins:
    def __init__(self):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(spec)
        self.info: dict[str, PluginInfo] = {}
        self.connectors: dict[str, type[Connector]] = {}
        self.sinks: dict[str, type[Sink]] = {}
        self._log = logs.get("ingestd.plugins")

    def load(self, extra: dict[str, object] | None = None) -> "Plugins":
        """Load every `ingestd` entry point (and `extra` plugin objects, for embedding)."""
        for ep in entry_points(group=GROUP):
            version = ep.dist.version if ep.dist else None
            info = self.info[ep.name] = PluginInfo(ep.name, ep.value, version)
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a plugin's import error must not stop the others
                self._quarantine(info, f"failed to load: {type(exc).__name__}: {exc}")
        for name, obj in (extra or {}).items():
            self.info[name] = PluginInfo(name, getattr(obj, "__name__", repr(obj)), None)
            self.pm.register(obj, name=name)
        self._check_pending()
        self._collect_connectors()
        self._collect_sinks()
        return self

    def _check_pending(self) -> None:
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                self.pm.unregister(exc.plugin)
                self._quarantine(self.info[name], f"unknown hook: {exc}")

    def _collect_connectors(self) -> None:
        for impl in self.pm.hook.register_connectors.get_hookimpls():
            info = self.info[impl.plugin_name]
            try:
                impl.function(register=lambda cls, info=info: self._register(info, cls))
            except Exception as exc:
                self._quarantine(info, f"register_connectors failed: {type(exc).__name__}: {exc}")

    def _register(self, info: PluginInfo, cls: type[Connector]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"{cls!r} is not a Connector subclass")
        if cls.kind in self.connectors:
            raise ValueError(f"connector kind {cls.kind!r} is already registered")
        self.connectors[cls.kind] = cls
        info.kinds.append(cls.kind)

    def _collect_sinks(self) -> None:
        for impl in self.pm.hook.register_sinks.get_hookimpls():
            info = self.info[impl.plugin_name]
            try:
                impl.function(register=lambda cls, info=info: self._register_sink(info, cls))
            except (Exception, SystemExit) as exc:
                self._quarantine(info, f"register_sinks failed: {type(exc).__name__}: {exc}")

    def _register_sink(self, info: PluginInfo, cls: type[Sink]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Sink)):
            raise TypeError(f"{cls!r} is not a Sink subclass")
        kind = getattr(cls, "kind", None)
        if not isinstance(kind, str) or not re.match(SINK_KINDS, kind):
            raise TypeError(f"{cls.__name__}.kind must be a short lower-case name, not {kind!r}")
        if not (isinstance(cls.Options, type) and issubclass(cls.Options, BaseModel)):
            raise TypeError(f"{cls.__name__}.Options must be a pydantic model")
        if kind in self.sinks:
            raise ValueError(f"sink kind {kind!r} is already registered")
        self.sinks[kind] = cls
        info.sink_kinds.append(kind)

    def sink_option_models(self) -> dict[str, type[BaseModel]]:
        """What the config validates each sink kind's options with. A kind a quarantined
        plugin would have provided (named like its entry point) is kept unchecked: that
        sink is reported unavailable, and the daemon still starts."""
        quarantined = {info.name: _UncheckedSink for info in self.info.values()
                       if info.status == "quarantined" and info.name not in self.connectors}
        return {**quarantined, **{kind: cls.Options for kind, cls in self.sinks.items()}}

    def _quarantine(self, info: PluginInfo, reason: str) -> None:
        info.status, info.error = "quarantined", reason
        for kind in info.sink_kinds:
            self.sinks.pop(kind, None)
        for kind in info.kinds:
            self.connectors.pop(kind, None)
        self._log.error("plugin quarantined", plugin=info.name, reason=reason)
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    def option_models(self):
        return {kind: cls.Options for kind, cls in self.connectors.items()}

    # -- downstream hooks: a plugin's exception is logged, never propagated -----------

    def document_stored(self, document, job, cursor=None) -> None:
        self._call("document_stored", document=document, job=job, cursor=cursor)

    def document_deleted(self, document, job, cursor=None) -> None:
        self._call("document_deleted", document=document, job=job, cursor=cursor)

    def job_finished(self, manifest) -> None:
        self._call("job_finished", manifest=manifest)

    def _call(self, hook: str, **kwargs) -> None:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                self._log.exception("plugin hook failed", plugin=impl.plugin_name, hook=hook)
