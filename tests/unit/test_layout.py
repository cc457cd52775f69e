"""The import-linter contracts in pyproject.toml name ingestd's packages one by one: a new
package must be placed in them, or plugins could reach it unnoticed."""

import pkgutil
import tomllib

import ingestd
from tests.support.helpers import ROOT


def contracts() -> dict[str, dict]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["name"]: c for c in data["tool"]["importlinter"]["contracts"]}


def children() -> set[str]:
    return {f"ingestd.{m.name}" for m in pkgutil.iter_modules(ingestd.__path__)}


def test_plugins_are_kept_from_every_core_package_but_plugin_and_errors():
    forbidden = set(contracts()["Plugins import only ingestd.plugin and ingestd.errors"]["forbidden_modules"])
    assert forbidden == children() - {"ingestd.plugin", "ingestd.errors"}
