"""The shipped unit is valid and hardened, as systemd itself judges it."""

import configparser
import re
import shutil
import subprocess

import pytest

from tests.support.helpers import ROOT

UNIT = ROOT / "systemd" / "ingestd.service"
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def installed_copy(tmp_path):
    """The unit as an operator installs it: ExecStart pointing at a real ingestd."""
    ingestd = shutil.which("ingestd") or str(ROOT / ".venv" / "bin" / "ingestd")
    text = UNIT.read_text().replace("/opt/ingestd/bin/ingestd", ingestd)
    path = tmp_path / "ingestd.service"
    path.write_text(text)
    return path


def test_unit_declares_the_contract():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    service = parser["Service"]
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
