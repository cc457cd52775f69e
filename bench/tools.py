"""The reference and peer tools: where they are, which version, and how to get them.

Only public, packaged tools are used, so anyone can reproduce a figure. A missing peer
skips its columns (with the exact install command), never the whole run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

INSTALL = "apt-get update && apt-get install -y rclone awscli"
AWS = "/usr/bin/aws"  # Debian's v2; a pip-installed v1 often shadows it on PATH


@dataclass
class Tool:
    name: str
    path: str | None
    version: str | None
    install: str

    @property
    def missing(self) -> str | None:
        if self.path:
            return None
        return f"{self.name} not found; install it with: {self.install}"


def _version(argv: list[str], env: dict | None = None) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if out.returncode == 0 and text else None


def _override(name: str, default: str | None) -> str | None:
    """BENCH_RCLONE / BENCH_AWS name another binary (or a missing one, to see the harness
    run without that peer)."""
    value = os.environ.get(f"BENCH_{name.upper()}")
    if value is None:
        return default
    return value if os.access(value, os.X_OK) else None


def rclone() -> Tool:
    path = _override("rclone", shutil.which("rclone"))
    version = _version([path, "version"], env=without_ca_bundle()) if path else None
    return Tool("rclone", path if version else None, version, INSTALL)


def aws() -> Tool:
    path = _override("aws", AWS if os.access(AWS, os.X_OK) else None)
    version = _version([path, "--version"]) if path else None
    if version and not version.startswith("aws-cli/2"):
        path, version = None, None
    return Tool("aws", path, version, INSTALL)


def openssl() -> Tool:
    path = shutil.which("openssl")
    return Tool("openssl", path, _version([path, "version"]) if path else None, "apt-get install -y openssl")


def without_ca_bundle(env: dict | None = None) -> dict:
    """rclone 1.60 refuses to start when AWS_CA_BUNDLE is set (even to a valid file)."""
    env = dict(os.environ if env is None else env)
    env.pop("AWS_CA_BUNDLE", None)
    return env


def find_all() -> dict[str, Tool]:
    """Every tool, probed at once: `aws --version` alone takes a second to start."""
    with ThreadPoolExecutor(3) as pool:
        found = {name: pool.submit(probe) for name, probe in (("rclone", rclone), ("aws", aws), ("openssl", openssl))}
    return {name: future.result() for name, future in found.items()}
