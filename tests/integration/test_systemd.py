"""The shipped unit is valid and hardened, as systemd itself judges it, and it fits the
shipped production config (systemd/ingestd.toml) on a host that has nothing else yet."""

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ingestd import config as config_mod
from ingestd.plugin.manager import Plugins
from tests.support.helpers import ROOT

UNIT = ROOT / "systemd" / "ingestd.service"
PRODUCTION = ROOT / "systemd" / "ingestd.toml"
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run does)")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def values(section, key: str) -> list[str]:
    """Every value of a key the unit may set more than once (space-separated lists)."""
    text = UNIT.read_text()
    lines = re.findall(rf"^{key}=(.*)$", text, re.M)
    return [v for line in lines for v in line.split()]


def installed_copy(tmp_path):
    """The unit as an operator installs it: ExecStart pointing at a real ingestd."""
    ingestd = shutil.which("ingestd") or str(ROOT / ".venv" / "bin" / "ingestd")
    text = UNIT.read_text().replace("/opt/ingestd/bin/ingestd", ingestd)
    path = tmp_path / "ingestd.service"
    path.write_text(text)
    return path


def test_unit_declares_the_contract():
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["RestartPreventExitStatus"].split() == ["78", "76", "65"]  # bad config, newer state, damaged state
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["StateDirectory"] == "ingestd"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert int(re.match(r"\d+", service["TimeoutStopSec"]).group()) > 30  # > default shutdown_timeout


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path):
    result = subprocess.run([analyze, "verify", str(installed_copy(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ingestd.service" not in result.stderr  # no warnings about our unit


@needs_analyze
def test_security_exposure_is_low(tmp_path):
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=25", str(installed_copy(tmp_path))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
    assert score <= 2.5


def test_the_unit_starts_on_a_host_without_its_drop_folders():
    """Issue 15 #2: `ReadWritePaths=/srv/ingest` failed the unit (226/NAMESPACE) on any host
    without that folder; a `-` prefix makes systemd skip a missing path."""
    paths = values(unit(), "ReadWritePaths")
    assert paths and all(p.startswith("-") for p in paths), paths


def test_the_production_config_fits_the_unit():
    """Issue 15 #1: the README had operators copy the development config, whose relative
    paths resolve next to /etc/ingestd and stop the unit with exit 78."""
    service = unit()["Service"]
    environment = dict(v.split("=", 1) for v in values(unit(), "Environment"))
    assert environment["INGESTD_CONFIG"] == "/etc/ingestd/ingestd.toml"
    cfg = config_mod.load(PRODUCTION, Plugins().load().option_models())
    assert cfg.daemon.state_dir == Path("/var/lib") / service["StateDirectory"]
    writable = [Path(p.lstrip("-")) for p in values(unit(), "ReadWritePaths")]
    folders = [s.options.path for s in cfg.sources if s.kind == "local"]
    assert folders and all(any(f.is_relative_to(w) for w in writable) for f in folders)
    assert all(f.is_absolute() for f in folders)
    assert cfg.daemon.log_format == "json"  # journald
    assert int(re.match(r"\d+", service["TimeoutStopSec"]).group()) > cfg.daemon.shutdown_timeout


def test_documentation_points_at_the_projects_docs():
    """Issue 15 #12: it pointed at systemd's own manual."""
    docs = values(unit(), "Documentation")
    assert docs and all(d.startswith("file:/usr/share/doc/ingestd/") for d in docs)
    assert all((ROOT / "docs" / d.rsplit("/", 1)[1]).is_file() for d in docs)


def test_the_install_steps_create_what_the_unit_and_config_need():
    """The documented steps, followed literally on a clean host, leave nothing missing: the
    production config where the unit reads it, and every drop folder it names."""
    text = (ROOT / "docs" / "operations.md").read_text()
    steps = re.search(r"## Running under systemd.*?```sh\n(.*?)```", text, re.S).group(1)
    assert "install -m 0640 -o root -g ingestd systemd/ingestd.toml /etc/ingestd/ingestd.toml" in steps
    assert "install -m 0644 systemd/ingestd.service /etc/systemd/system/" in steps
    cfg = config_mod.load(PRODUCTION, Plugins().load().option_models())
    for source in cfg.sources:
        if source.kind == "local":
            assert re.search(rf"install -d .*-o ingestd .*{re.escape(str(source.options.path))}\b", steps)
    installed_docs = re.search(r"install -m 0644 docs/\*\.md (\S+)", steps).group(1)
    assert all(d.startswith(f"file:{installed_docs}") for d in values(unit(), "Documentation"))
