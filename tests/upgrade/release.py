"""A tagged ingestd release, installed the way a user installs it, and run as a user runs it.

`install` extracts the tag with `git archive` and pip-installs it with its S3 and SharePoint
extras into a venv of its own: none of this checkout's code can leak into it (no editable
install, no PYTHONPATH), so what the release writes is what that release writes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.support.helpers import ROOT
from tests.plugins.s3.conftest import AWS_VARS
from tests.support.procs import Daemon

OTHER_INGESTD = ("PYTHONPATH", "INGESTD_CONFIG")


def clean_env(home: Path) -> dict[str, str]:
    """The environment for an ingestd process: none of the machine's AWS settings (nor
    IMDS), no proxies, and nothing that would put another ingestd on its import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in AWS_VARS + OTHER_INGESTD and not k.lower().endswith("_proxy")}
    env.update(AWS_CONFIG_FILE=str(home / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


class Release:
    """An installed release: its venv's `ingestd`."""

    def __init__(self, tag: str, venv: Path):
        self.tag = tag
        self.venv = venv
        self.ingestd = venv / "bin" / "ingestd"

    @classmethod
    def install(cls, tag: str, workdir: Path, venv: Path | None = None) -> "Release":
        """Extract `tag` into `workdir/src` and install it into `venv` (made unless it holds
        an `ingestd` already, to save a minute when iterating on the story)."""
        venv = venv or workdir / "venv"
        release = cls(tag, venv)
        if release.ingestd.exists():
            return release
        src = workdir / "src"
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", tag], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)  # Debian's pip cannot build it
        subprocess.run([*pip, f"{src}[s3,sharepoint]"], check=True)
        return release

    def version(self) -> str:
        return subprocess.run([str(self.ingestd), "--version"], check=True, capture_output=True,
                              text=True).stdout.strip()

    def packages(self) -> list[str]:
        """`pip freeze` of the release's venv: what the fixture was made with."""
        out = subprocess.run([str(self.venv / "bin" / "python"), "-m", "pip", "freeze", "--all"], check=True,
                             capture_output=True, text=True).stdout
        return sorted(line for line in out.splitlines() if line.strip())

    def cli(self, *args, config: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.ingestd), *map(str, args), "--config", str(config)], capture_output=True,
                              text=True, env=env, timeout=timeout, cwd=config.parent)

    def cli_json(self, *args, config: Path, env: dict):
        result = self.cli(*args, "--json", config=config, env=env)
        if "Traceback" in result.stderr:
            raise RuntimeError(f"{self.tag} ingestd {' '.join(map(str, args))} crashed:\n{result.stderr}")
        return result.returncode, json.loads(result.stdout)

    def daemon(self, config: Path, state: Path, workdir: Path, env: dict) -> "ReleaseDaemon":
        return ReleaseDaemon(self, config, state, workdir, env)


class ReleaseDaemon(Daemon):
    """`ingestd run` of an installed release, in its own venv and environment."""

    def __init__(self, release: Release, config: Path, state: Path, workdir: Path, env: dict):
        super().__init__(config, state, workdir)
        self.release = release
        self.env = {**env, "NOTIFY_SOCKET": self.notify.path}
        self.cwd = config.parent

    def argv(self) -> list[str]:
        return [str(self.release.ingestd), "run", "--config", str(self.config)]
