"""Loading plugins: entry points one by one, so one broken plugin (or one broken connector
class) is refused with a reason instead of taking the daemon, or every other plugin, down.

Whatever is refused is kept as a `Problem` (plugin, kind, reason): the CLI, `check-config`
and the daemon's `/sources` and `/healthz` all show that one list, and a configured source
of a refused kind is loaded as unavailable (its options unchecked) so the rest still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy
from pydantic import BaseModel, ConfigDict

from ingestd._lib import logs
from ingestd.plugin import contract, spec
from ingestd.plugin.connector import Connector
from ingestd.plugin.extractor import Extractor
from ingestd.plugin.hooks import Hooks

GROUP = "ingestd"


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    status: str = "loaded"  # loaded | quarantined
    error: str | None = None
    kinds: list[str] = field(default_factory=list)  # registered and usable
    refused: dict[str, str] = field(default_factory=dict)  # kind → why its class was refused
    extractors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """A plugin mistake every surface reports: `kind` is None when the whole plugin is out
    and it is unknown which kinds it would have provided."""

    plugin: str
    kind: str | None
    reason: str


class Unchecked(BaseModel):
    """The options of a source whose connector was refused: kept as written, unvalidated,
    so the source can be listed as unavailable instead of failing the whole config."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Plugins:
    def __init__(self, **hook_limits):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(spec)
        self.info: dict[str, PluginInfo] = {}
        self.connectors: dict[str, type[Connector]] = {}
        self.extractors: dict[str, type[Extractor]] = {}
        self._log = logs.get("ingestd.plugins")
        self.hooks = Hooks(self.pm, self._log, **hook_limits)

    def load(self, extra: dict[str, object] | None = None) -> "Plugins":
        """Load every `ingestd` entry point (and `extra` plugin objects, for embedding)."""
        for ep in entry_points(group=GROUP):
            version = ep.dist.version if ep.dist else None
            info = self.info[ep.name] = PluginInfo(ep.name, ep.value, version)
            try:
                self.pm.register(ep.load(), name=ep.name)
            except (Exception, SystemExit) as exc:  # a plugin's import error must not stop the others
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
            except (Exception, SystemExit) as exc:
                self._quarantine(info, f"{hook} failed: {type(exc).__name__}: {exc}")

    def _collect_connectors(self) -> None:
        self._collect("register_connectors", self._register)

    def _register(self, info: PluginInfo, cls: type[Connector]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"{cls!r} is not a Connector subclass")
        kind = getattr(cls, "kind", None)
        if isinstance(kind, str) and (kind in self.connectors or self._refused_by_other(info, kind)):
            raise ValueError(f"connector kind {kind!r} is already registered")
        problems = contract.problems(cls)
        if problems:
            reason = f"connector {cls.__name__}: " + "; ".join(problems)
            info.refused[kind if isinstance(kind, str) else f"<{cls.__name__}>"] = reason
            self._log.error("connector refused", plugin=info.name, kind=kind, reason=reason)
            return
        self.connectors[kind] = cls
        info.kinds.append(kind)

    def _refused_by_other(self, info: PluginInfo, kind: str) -> bool:
        return any(kind in other.refused for other in self.info.values() if other is not info)

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
            info.refused[kind] = f"plugin {info.name!r} is quarantined: {reason}"
        info.kinds = []
        for name in info.extractors:
            self.extractors.pop(name, None)
        self._log.error("plugin quarantined", plugin=info.name, reason=reason)
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)

    # -- what every surface reports --------------------------------------------------

    def problems(self) -> list[Problem]:
        """Every refused plugin and connector kind, once each, with the reason."""
        out = []
        for info in self.info.values():
            if info.status == "quarantined" and not info.refused:
                out.append(Problem(info.name, None, info.error or "quarantined"))
            out.extend(Problem(info.name, kind, reason) for kind, reason in info.refused.items())
        return out

    def refused_kinds(self) -> dict[str, str]:
        """Kinds a source may name that cannot run, with the reason. A plugin that failed
        to import is taken to provide the kind its entry point is named after (the
        convention: `mykind = "my_plugin"`), unless another plugin provides it."""
        out = {}
        for info in self.info.values():
            out.update(info.refused)
            if info.status == "quarantined" and not info.refused and info.name not in self.connectors:
                out.setdefault(info.name, f"plugin {info.name!r} is quarantined: {info.error}")
        return out

    def unavailable(self, kind: str) -> str | None:
        """Why sources of `kind` cannot run here (a refused class or plugin, a missing or
        broken dependency), or None when they can."""
        cls = self.connectors.get(kind)
        if cls is not None:
            return cls.unavailable_reason()
        return self.refused_kinds().get(kind, f"no installed plugin provides connector {kind!r}")

    def option_models(self) -> dict[str, type[BaseModel]]:
        """What the config validates each kind's options with; a refused kind's are kept
        unchecked, so its sources load as unavailable instead of as unknown kinds."""
        return {**{kind: Unchecked for kind in self.refused_kinds()},
                **{kind: cls.Options for kind, cls in self.connectors.items()}}
