"""Loading plugins: entry points one by one, so one broken plugin is quarantined with a
reason instead of taking the daemon (or every other plugin) down with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from ingestd._lib import logs
from ingestd.plugin import spec
from ingestd.plugin.connector import Connector
from ingestd.plugin.extractor import Extractor

GROUP = "ingestd"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    status: str = "loaded"  # loaded | quarantined
    error: str | None = None
    kinds: list[str] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)


class Plugins:
    def __init__(self):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(spec)
        self.info: dict[str, PluginInfo] = {}
        self.connectors: dict[str, type[Connector]] = {}
        self.extractors: dict[str, type[Extractor]] = {}
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
        self._collect_extractors()
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

    def _collect(self, hook: str, register) -> None:
        """Call each plugin's `hook(register)`; a plugin whose registration fails is quarantined."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            info = self.info[impl.plugin_name]
            try:
                impl.function(register=lambda cls, info=info: register(info, cls))
            except Exception as exc:
                self._quarantine(info, f"{hook} failed: {type(exc).__name__}: {exc}")

    def _collect_connectors(self) -> None:
        self._collect("register_connectors", self._register)

    def _register(self, info: PluginInfo, cls: type[Connector]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"{cls!r} is not a Connector subclass")
        if cls.kind in self.connectors:
            raise ValueError(f"connector kind {cls.kind!r} is already registered")
        self.connectors[cls.kind] = cls
        info.kinds.append(cls.kind)

    def _collect_extractors(self) -> None:
        self._collect("register_extractors", self._register_extractor)

    def _register_extractor(self, info: PluginInfo, cls: type[Extractor]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise TypeError(f"{cls!r} is not an Extractor subclass")
        for attr in ("name", "version", "mime_types"):
            if not getattr(cls, attr, None):
                raise ValueError(f"extractor {cls.__name__} declares no {attr}")
        if cls.name in self.extractors:
            raise ValueError(f"extractor {cls.name!r} is already registered")
        self.extractors[cls.name] = cls
        info.extractors.append(cls.name)

    def _quarantine(self, info: PluginInfo, reason: str) -> None:
        info.status, info.error = "quarantined", reason
        for kind in info.kinds:
            self.connectors.pop(kind, None)
        for name in info.extractors:
            self.extractors.pop(name, None)
        self._log.error("plugin quarantined", plugin=info.name, reason=reason)
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    def option_models(self):
        return {kind: cls.Options for kind, cls in self.connectors.items()}

    # -- downstream hooks: a plugin's exception is logged, never propagated -----------

    def document_stored(self, document, job) -> None:
        self._call("document_stored", document=document, job=job)

    def job_finished(self, manifest) -> None:
        self._call("job_finished", manifest=manifest)

    def _call(self, hook: str, **kwargs) -> None:
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                self._log.exception("plugin hook failed", plugin=impl.plugin_name, hook=hook)
