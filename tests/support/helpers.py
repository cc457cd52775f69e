"""Small helpers shared by the tests: configs, CLI runs, condition waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, *, daemon=None, http=None, credentials=None, extract=None, sources=()) -> Path:
    lines = []
    for table, values in (("daemon", daemon), ("http", http), ("credentials", credentials), ("extract", extract)):
        if values:
            lines.append(f"[{table}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for source in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in source.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ingestd", *map(str, args)], capture_output=True, text=True,
        env=full_env, timeout=timeout,
    )


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll `condition` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def manifests(state_dir: Path) -> list[dict]:
    out = []
    for path in sorted((state_dir / "jobs").glob("*.json")):
        out.append(json.loads(path.read_text()))
    return out
