"""The example plugins under examples/, installed by pip as a user would install them
(from a copy, so the build leaves nothing in the checkout; offline: no build isolation)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

EXAMPLES = ROOT / "examples"


def pip_install(name: str, target: Path, work: Path) -> Path:
    source = work / name
    shutil.copytree(EXAMPLES / name, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, capture_output=True)
    return target


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """A directory holding every example plugin, installed; put it on PYTHONPATH."""
    work = tmp_path_factory.mktemp("examples")
    target = work / "site"
    for example in sorted(p.name for p in EXAMPLES.iterdir() if (p / "pyproject.toml").exists()):
        pip_install(example, target, work)
    return target


@pytest.fixture
def example_env(example_site) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(example_site), *sys.path])}
