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


def write_config(path: Path, *, daemon=None, http=None, credentials=None, extract=None, sources=(), sinks=(),
                 cluster=None) -> Path:
    lines = []
    for table, values in (("daemon", daemon), ("http", http), ("credentials", credentials), ("extract", extract),
                          ("cluster", cluster)):
        if values:
            lines.append(f"[{table}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for source in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in source.items()]
    for sink in sinks:
        lines.append("[[sinks]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in sink.items()]
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


def drop_file(path: Path, data: bytes, *, rename: bool = False) -> None:
    """Write a file into a drop folder: in place, or (as careful writers do) under a hidden
    temporary name renamed into place."""
    if not rename:
        path.write_bytes(data)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def make_chain(root: Path, names: list[str], data: bytes) -> str:
    """Folders `names[:-1]` and a file `names[-1]` below `root`, made by descriptor (so the
    whole path may be past PATH_MAX or deeper than any limit); returns the path as a string."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names[:-1]:
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open(names[-1], os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)
    return os.path.join(str(root), *names)
