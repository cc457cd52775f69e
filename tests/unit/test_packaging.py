"""How the project installs (issue 15 #9): `make run` brings only what ingestd needs to
run, `make test` adds the test tools, and setuptools has nothing deprecated to warn about."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from tests.support.helpers import ROOT

make = shutil.which("make")


def dry_run(target: str, tmp_path) -> str:
    """What `make TARGET` would run in a clone that has no venv yet."""
    result = subprocess.run([make, "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(make is None, reason="make is not installed")
def test_make_run_installs_no_test_tools_and_make_test_does(tmp_path):
    run = dry_run("run", tmp_path)
    assert "pip install --quiet -e '.[s3,sharepoint]'" in run and "test]" not in run
    assert "pip install --quiet -e '.[s3,sharepoint,test]'" in dry_run("test", tmp_path)


def test_the_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=7") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in requires)  # the first setuptools that reads the SPDX form
