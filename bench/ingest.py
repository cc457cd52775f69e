"""ingestd as a user runs it: a TOML config, `ingestd ingest SOURCE --json` as a process,
and the state directory read back (manifests, item files, document records)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

from tests.support.helpers import toml_value

from . import measure

PYTHON = sys.executable  # the harness's interpreter (moto's server runs on it too)
ROOT = Path(__file__).resolve().parent.parent
# `make bench` measures ingestd as a user installs it (`pip install 'ingestd[s3,sharepoint,text]'`,
# no test tools, no editable-install finder): INGESTD_BENCH_INGESTD names that install's
# console script. Without it (the smoke test), the harness's own venv runs ingestd.
INSTALLED = os.environ.get("INGESTD_BENCH_INGESTD")


def command(*args: str) -> list[str]:
    """The argv that runs `ingestd ARGS...`."""
    return [INSTALLED, *args] if INSTALLED else [PYTHON, "-m", "ingestd", *args]


def write_config(path: Path, state_dir: Path, sources: list[dict], *, http: bool = False,
                 registry: Path | None = None, log_level: str = "info", extract: bool = True,
                 per_client: int | None = None) -> Path:
    """A config as production would have it: JSON logs at info, durable store. `per_client`:
    the connections one address may hold, for a harness whose many clients share 127.0.0.1."""
    lines = ["[daemon]", f"state_dir = {toml_value(state_dir)}", 'log_format = "json"',
             f"log_level = {toml_value(log_level)}", "shutdown_timeout = 20"]
    lines += ["[http]", 'listen = "127.0.0.1:0"'] if http else ["[http]", "enabled = false"]
    lines += [f"max_connections_per_client = {per_client}"] if http and per_client else []
    lines += [] if extract else ["[extract]", "enabled = false"]
    if registry is not None:
        lines += ["[credentials]", f"registry = {toml_value(registry)}"]
    for source in sources:
        lines.append("[[sources]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in source.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_registry(path: Path, entries: dict) -> Path:
    """The credential registry; ingestd refuses one readable by others, as ssh does."""
    path.write_text(json.dumps(entries))
    os.chmod(path, 0o600)
    return path


def env() -> dict:
    """The environment ingestd runs in: the repo importable (plugins live in the venv)."""
    out = dict(os.environ)
    out.pop("NOTIFY_SOCKET", None)
    return out


def ingest(config: Path, source: str, timeout: float = 900.0) -> tuple[measure.Usage, dict]:
    """One foreground job; returns its usage and its manifest. Exit 0 means `succeeded`."""
    done = measure.run(command("ingest", source, "--json", "--config", str(config)),
                       env=env(), cwd=ROOT, timeout=timeout, check=False)
    try:
        manifest = json.loads(done.stdout)
    except ValueError:
        raise measure.CommandFailed(f"ingestd ingest {source}: no manifest (exit {done.exit_code}): "
                                    f"{done.stderr[-2000:]}") from None
    if done.exit_code != 0 or manifest.get("status") != "succeeded":
        errors = manifest.get("errors", [])[:3]
        raise measure.CommandFailed(f"ingestd ingest {source}: {manifest.get('status')}: {errors}")
    return done.usage, manifest


def job_seconds(manifest: dict) -> float | None:
    """started_at → finished_at: the job alone, without interpreter start-up."""
    if not manifest.get("started_at") or not manifest.get("finished_at"):
        return None
    start = datetime.fromisoformat(manifest["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(manifest["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def manifests(state_dir: Path) -> list[dict]:
    out = []
    jobs = state_dir / "jobs"
    if not jobs.is_dir():
        return out
    for path in sorted(jobs.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            out.append(json.loads(path.read_text()))
        except (ValueError, FileNotFoundError):
            continue  # being replaced right now; the next poll sees it
    return out


class ManifestWatch:
    """The manifests of a state dir, re-reading only the files that changed since the last
    look: a burst of 100,000 files makes a hundred jobs, and parsing every manifest on
    every poll would take CPU from the daemon being measured."""

    def __init__(self, state_dir: Path):
        self.jobs = state_dir / "jobs"
        self._seen: dict[str, tuple[tuple[int, int, int], dict]] = {}

    def read(self) -> list[dict]:
        if not self.jobs.is_dir():
            return []
        for entry in os.scandir(self.jobs):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            key = (st.st_ino, st.st_mtime_ns, st.st_size)  # an atomic rewrite is a new inode
            old = self._seen.get(entry.name)
            if old is not None and old[0] == key:
                continue
            try:
                with open(entry.path, "rb") as fh:
                    self._seen[entry.name] = (key, json.loads(fh.read()))
            except (ValueError, FileNotFoundError):
                continue  # being replaced right now; the next poll sees it
        return [m for _, m in self._seen.values()]


def runtime_info(state_dir: Path) -> dict:
    return json.loads((state_dir / "daemon.json").read_text())


def items(state_dir: Path, manifest: dict) -> list[dict]:
    path = state_dir / "jobs" / manifest["items_file"]
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def current_versions(state_dir: Path) -> dict[str, str]:
    """origin_uri → sha256 of each document's current version."""
    db = sqlite3.connect(f"file:{state_dir / 'documents.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT v.origin_uri, v.sha256 FROM documents d JOIN versions v "
                          "ON v.doc_id = d.doc_id AND v.seq = d.current_seq").fetchall()
    finally:
        db.close()
    return dict(rows)


def parse_time(ts: str) -> float:
    """A manifest timestamp (RFC 3339, UTC, milliseconds) as a Unix time."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
