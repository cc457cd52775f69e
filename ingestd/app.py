"""The parts every entry point shares, built once from a Config: plugins, credential
registry, stores, pipeline and one connector per enabled source.

The CLI's one-shot commands and the daemon both run jobs through `App.run_job`, so a
job started by hand and one started by a watcher take exactly the same path.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ingestd import config as config_mod
from ingestd._lib import logs
from ingestd.config import Config
from ingestd.credentials import Registry
from ingestd.errors import Code, ConfigError, StateError, UsageError
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Lifecycle
from ingestd.jobs.locks import source_lock
from ingestd.jobs.manifest import Manifest, Trigger
from ingestd.jobs.pipeline import Pipeline
from ingestd.plugin.connector import Connector
from ingestd.plugin.manager import Plugins
from ingestd.runtime import systemd
from ingestd.state.chains import chains
from ingestd.state.runner import open_state
from ingestd.store.catalogue import Store, damaged_message
from ingestd.store.space import Reserve, Space
from ingestd.store.texts import Texts


def load_config(path: Path, plugins: Plugins) -> Config:
    return config_mod.load(path, plugins.option_models(), plugins.sink_option_models())


class App:
    def __init__(self, config: Config, plugins: Plugins):
        self.config = config
        self.plugins = plugins
        self.state_dir: Path = config.daemon.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.registry = Registry(config.credentials.registry)
        # an older state is migrated before anything opens it; held (shared) until close
        self.state = open_state(self.state_dir, chains(self.state_dir, config.sources, plugins.connectors),
                                write=True, progress=systemd.starting)
        reserve = Reserve(config.daemon.min_free_bytes, config.daemon.min_free_percent)
        self.store = Store(self.state_dir, Space(self.state_dir, reserve))
        self.texts = Texts(self.state_dir)
        self.jobs = JobStore(self.state_dir)
        self.lifecycle = Lifecycle(self.jobs)
        # plugins hear of a finished job after ingestd's own parts (queue, watcher, metrics),
        # through the hooks facade (a snapshot, on the plugin's own lane)
        self.lifecycle.subscribe(lambda done: plugins.hooks.job_finished(done.manifest), late=True)
        self.pipeline = Pipeline(self.store, self.lifecycle, self.state_dir, hooks=plugins.hooks)
        self.connectors: dict[str, Connector] = {}
        self._lock = threading.Lock()
        self._log = logs.get("ingestd.app")

    def close(self) -> None:
        for name, connector in self.connectors.items():
            try:
                connector.close()
            except Exception:  # one plugin's failure to close must not keep the rest open
                logs.get("ingestd.plugins").exception("connector close failed", source=name)
        self.pipeline.close()
        self.lifecycle.close()
        self.plugins.hooks.close()  # queued hook calls get a last chance to run
        self.texts.close()
        self.store.close()
        self.state.close()

    def connector(self, name: str) -> Connector:
        """The connector for a configured source, built on first use."""
        with self._lock:
            if name in self.connectors:
                return self.connectors[name]
            source = self.config.source(name)
            if source is None:
                known = ", ".join(s.name for s in self.config.sources) or "none"
                raise UsageError(f"unknown source {name!r} (configured: {known})")
            problem = unavailable_problem(source, self.plugins)
            if problem:
                raise ConfigError(problem)
            cls = self.plugins.connectors[source.kind]
            try:
                connector = cls(source, self.registry, self.state_dir)
            except Exception as exc:  # the plugin's constructor: this source is out, not the caller
                raise ConfigError(f'sources "{name}": connector {source.kind!r} could not be set up: '
                                  f"{type(exc).__name__}: {exc}") from exc
            self.connectors[name] = connector
            return connector

    def forget_connector(self, name: str) -> None:
        """Drop a source's connector (on reload); a job still using it keeps its reference."""
        with self._lock:
            self.connectors.pop(name, None)

    def replace_config(self, config: Config) -> None:
        with self._lock:
            self.config = config

    def run_job(self, source: str, trigger: Trigger, *, hint=None, stop: threading.Event | None = None,
                manifest: Manifest | None = None) -> Manifest:
        """Run a job the daemon's queue made (`manifest`), or a new one, to its end. A new
        one is made only once its source's lock is taken: a one-shot whose source is busy
        records no job, and no other process ever sees this one before it is running under
        the lock (so none can take it for one a dead process left). Unknown or unavailable
        sources, a busy source and an unwritable state raise before a job exists; once it
        does, whatever goes wrong ends it `failed`, never half-open."""
        if manifest is not None:
            return self._run(manifest, stop=stop, hint=hint)
        connector = self.connector(source)
        with source_lock(self.state_dir, source) as held:
            manifest = self.lifecycle.create(source, connector.kind, trigger)
            return self._run(manifest, stop=stop, hint=hint, held=held)

    def _run(self, manifest: Manifest, *, stop, hint, held=None) -> Manifest:
        try:
            connector = self.connector(manifest.source)
            return self.pipeline.run(manifest, connector, stop=stop, hint=hint, held=held)
        except Exception:
            self._log.exception("job could not run", job_id=manifest.job_id, source=manifest.source)
            return self.lifecycle.fail(manifest, Code.INTERNAL, "the job could not run; see the daemon log", hint)


def unavailable_problem(source, plugins: Plugins) -> str | None:
    """The one-line complaint for a source whose connector cannot run: its plugin or class
    was refused, or its dependency is missing or broken."""
    reason = plugins.unavailable(source.kind)
    return f'sources "{source.name}": connector {source.kind!r} is unavailable: {reason}' if reason else None


@dataclass(frozen=True)
class Findings:
    """What checking a config found, sorted by what it means, the same for every entry
    point: `check-config` fails on any problem; `run`, a reload and `ingest` refuse to run
    a source with problems (reported with these lines) and run the others; warnings
    (a certificate close to expiry) are printed or logged and stop nothing."""

    problems: dict[str, list[str]] = field(default_factory=dict)  # source name -> lines
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [line for lines in self.problems.values() for line in lines] + self.warnings


def findings(config: Config, plugins: Plugins, only: str | None = None) -> Findings:
    """Everything checked beyond the file's own validity (connector dependencies,
    credentials, each connector's `check()`), for every source or `only` one; writes
    nothing. Every line starts with the file to fix."""
    registry = Registry(config.credentials.registry)
    label = str(config.path) if config.path else "<config>"
    found = Findings()
    for source in config.sources:
        if only is not None and source.name != only:
            continue
        for line in _source_lines(source, plugins, registry, config.daemon.state_dir):
            located = line if _names_a_file(line, registry) else f"{label}: {line}"
            if _is_warning(line):
                found.warnings.append(located)
            else:
                found.problems.setdefault(source.name, []).append(located)
    return found


def check(config: Config, plugins: Plugins) -> list[str]:
    """`findings` as lines, problems first (what `check-config` prints)."""
    return findings(config, plugins).lines()


def _source_lines(source, plugins: Plugins, registry: Registry, state_dir: Path) -> list[str]:
    problem = unavailable_problem(source, plugins)
    if problem:
        return [problem]
    cls = plugins.connectors[source.kind]
    credential = getattr(source.options, "credentials", None)
    if credential:
        try:
            registry.resolve(credential)
        except ConfigError as exc:
            return [line if _names_a_file(line, registry) else f'sources "{source.name}": credentials: {line}'
                    for line in exc.lines]
    return _connector_check(source, lambda: cls(source, registry, state_dir)) if source.enabled else []


def _connector_check(source, build) -> list[str]:
    """A connector's own `check()`, with whatever its plugin raises turned into one line."""
    try:
        return list(build().check())
    except Exception as exc:
        return [f'sources "{source.name}": connector {source.kind!r} check failed: {type(exc).__name__}: {exc}']


def _names_a_file(line: str, registry: Registry) -> bool:
    """A registry problem already starts with the registry's path: the file to fix."""
    return registry.path is not None and line.startswith(f"{registry.path}:")


def _is_warning(line: str) -> bool:
    """Connectors mark advisory findings `warning:` (after their `sources "x": key:` prefix)."""
    return line.startswith("warning:") or ": warning: " in line


def check_state(config: Config) -> list[str]:
    """What `check-config` finds in the state dir the config names, opened read-only: a
    catalogue that is not a database raises StateError (the exit status `run` would give);
    folders ingestd could not write are problems (each line starts with the file to fix)."""
    label = str(config.path) if config.path else "<config>"
    state = config.daemon.state_dir
    problems = []
    catalogue = state / "documents.sqlite"
    if catalogue.exists():
        try:
            db = sqlite3.connect(f"{catalogue.resolve().as_uri()}?mode=ro", uri=True)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            problems.append(f"{label}: daemon.state_dir: cannot read {catalogue}: {exc}")
        except sqlite3.DatabaseError as exc:
            raise StateError(damaged_message(catalogue, exc)) from None
    for folder in (state / "jobs", state):  # the one it writes most, else the dir itself
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                problems.append(f"{label}: daemon.state_dir: {folder} is not writable by this user")
            break
    return problems
