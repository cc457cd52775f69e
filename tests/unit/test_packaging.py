"""How the project installs (issue 15 #9): `make run` brings only what ingestd needs to
run, `make test` adds the test tools and the cluster extra, and setuptools has nothing deprecated to warn about; an
extra installs the same on every pip a user may have."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement

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
    assert "pip install --quiet -e '.[s3,sharepoint,text]'" in run and "test]" not in run
    assert "pip install --quiet -e '.[s3,sharepoint,text,cluster,test]'" in dry_run("test", tmp_path)


def test_the_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=7") and int(r.split(">=")[1].split(".")[0]) >= 77
               for r in requires)  # the first setuptools that reads the SPDX form


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> list[Requirement]:
    """Every requirement (without markers) reached from these, through the installed venv."""
    seen, todo, out = set(), [Requirement(r) for r in requirements], []
    while todo:
        req = todo.pop()
        if req.marker is not None:
            continue
        out.append(req)  # each time: the same package may be asked for with and without extras
        if _normal(req.name) in seen:
            continue
        seen.add(_normal(req.name))
        todo += [Requirement(r) for r in importlib.metadata.requires(req.name) or []]
    return out


def test_the_text_extra_does_not_rely_on_pip_normalising_extra_names():
    """pip before 23.3 does not normalise extra names (PEP 685): jusText's `lxml[html_clean]`
    then installs nothing, lxml 6 declares `html-clean`, and HTML extraction cannot import.
    What such an extra would bring is declared in ours."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ours = {_normal(Requirement(r).name) for r in project["project"]["optional-dependencies"]["text"]}
    missing = []
    for req in _closure(project["project"]["optional-dependencies"]["text"]):
        for extra in (e for e in req.extras if e != _normal(e)):
            for r in importlib.metadata.requires(req.name) or []:
                dep = Requirement(r)
                if dep.marker and dep.marker.evaluate({"extra": _normal(extra)}) and _normal(dep.name) not in ours:
                    missing.append(f"{req} needs {dep.name}")
    assert not missing
