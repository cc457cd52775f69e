import os
from pathlib import Path

import pytest

from ingestd import config as config_mod
from ingestd.errors import ConfigError
from ingestd.plugin.manager import Plugins
from tests.support.helpers import run_cli


@pytest.fixture(scope="module")
def models():
    return Plugins().load().option_models()


def load_text(tmp_path: Path, text: str, models):
    path = tmp_path / "ingestd.toml"
    path.write_text(text)
    return config_mod.load(path, models)


def errors_of(tmp_path, text, models) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, models)
    return info.value.lines


def test_defaults_and_relative_paths_resolve_against_the_config_dir(tmp_path, models):
    cfg = load_text(tmp_path, '[daemon]\nstate_dir = "var"\n[[sources]]\nname = "a"\nkind = "local"\npath = "drop"\n', models)
    assert cfg.daemon.state_dir == tmp_path / "var"
    assert cfg.daemon.workers == 2 and cfg.daemon.log_format == "json"
    assert cfg.http.listen == "127.0.0.1:8765"
    source = cfg.source("a")
    assert source.options.path == tmp_path / "drop"
    assert source.options.after == "move" and source.options.settle_seconds == 0.5


def test_every_error_at_once_with_file_and_key_path(tmp_path, models):
    text = """
[daemon]
workers = 0
colour = "blue"

[[sources]]
name = "Bad Name"
kind = "local"

[[sources]]
name = "reports"
kind = "local"
pathh = "x"

[[sources]]
name = "s"
kind = "ftp"
"""
    lines = errors_of(tmp_path, text, models)
    label = str(tmp_path / "ingestd.toml")
    assert all(line.startswith(label + ": ") for line in lines)
    joined = "\n".join(lines)
    assert "daemon.workers: input should be greater than or equal to 1" in joined
    assert "daemon.colour: unknown key" in joined
    assert 'sources[0] "Bad Name": name: must match' in joined
    assert 'sources[1] "reports": path: field required' in joined
    assert 'sources[1] "reports": pathh: unknown key; did you mean \'path\'?' in joined
    assert "sources[2] \"s\": kind: unknown connector 'ftp' (available: local" in joined
    assert len(lines) == 6


def test_toml_syntax_error_names_line_and_column(tmp_path, models):
    lines = errors_of(tmp_path, '[daemon]\nworkers = 2\nlog_level = "info\n', models)
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'ingestd.toml'}:3:")
    assert "invalid TOML" in lines[0]


def test_duplicate_source_names(tmp_path, models):
    text = '[[sources]]\nname = "a"\nkind = "local"\npath = "x"\n[[sources]]\nname = "a"\nkind = "local"\npath = "y"\n'
    assert any("duplicate source name" in line for line in errors_of(tmp_path, text, models))


def test_durations(tmp_path, models):
    text = '[[sources]]\nname = "a"\nkind = "local"\npath = "x"\nsettle_seconds = "250ms"\nrescan_seconds = "5m"\n'
    options = load_text(tmp_path, text, models).source("a").options
    assert options.settle_seconds == 0.25 and options.rescan_seconds == 300
    bad = text.replace('"5m"', '"soon"')
    assert any("is not a duration" in line for line in errors_of(tmp_path, bad, models))


def test_locate_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTD_CONFIG", "/from/env.toml")
    assert config_mod.locate("/explicit.toml") == Path("/explicit.toml")
    assert config_mod.locate(None) == Path("/from/env.toml")
    monkeypatch.delenv("INGESTD_CONFIG")
    assert config_mod.locate(None) == Path("/etc/ingestd/ingestd.toml")


def test_check_config_exit_78_and_one_line_per_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nworkers = "many"\n[http]\nlisten = "nowhere"\n')
    result = run_cli("check-config", "--config", path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "daemon.workers" in lines[0] and "http.listen" in lines[1]
    assert "Traceback" not in result.stderr


def test_check_config_ok_and_missing_file(env):
    result = run_cli("check-config", "--config", env.config)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    missing = run_cli("check-config", "--config", env.root / "nope.toml")
    assert missing.returncode == 78 and "file not found" in missing.stderr


def test_config_from_environment_variable(env):
    result = run_cli("check-config", env={"INGESTD_CONFIG": str(env.config)})
    assert result.returncode == 0 and result.stdout.strip() == "ok"


def test_embedded_default_config_is_valid(models):
    root = Path(__file__).resolve().parents[2]
    cfg = config_mod.load(root / "etc" / "ingestd.toml", models)
    assert cfg.daemon.state_dir == root / "var" / "state"
    assert cfg.source("inbox").options.path == root / "var" / "inbox"


def test_token_file_and_registry_may_come_from_load_credential(tmp_path, models, monkeypatch):
    """Issue 14 #14: `${CREDENTIALS_DIRECTORY}` worked only inside the registry."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "http-token").write_text("0123456789abcdef0123\n")
    (creds / "credentials.json").write_text("{}")
    for name in ("http-token", "credentials.json"):
        os.chmod(creds / name, 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_text(tmp_path, '[http]\ntoken_file = "${CREDENTIALS_DIRECTORY}/http-token"\n'
                              '[credentials]\nregistry = "${CREDENTIALS_DIRECTORY}/credentials.json"\n', models)
    assert cfg.http.token_file == creds / "http-token"
    assert cfg.credentials.registry == creds / "credentials.json"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    lines = errors_of(tmp_path, '[credentials]\nregistry = "${CREDENTIALS_DIRECTORY}/credentials.json"\n', models)
    assert lines[0].startswith(f"{tmp_path / 'ingestd.toml'}: credentials.registry: ")
    assert "${CREDENTIALS_DIRECTORY} is not set" in lines[0] and "LoadCredential=" in lines[0]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_token_file_others_can_read_is_refused(tmp_path, models, mode):
    """Issue 14 #14: it was only warned about, at start, in the log."""
    token = tmp_path / "http-token"
    token.write_text("0123456789abcdef0123\n")
    os.chmod(token, mode)
    (line,) = errors_of(tmp_path, f'[http]\ntoken_file = "{token}"\n', models)
    assert "http.token_file" in line and "too open" in line and f"chmod 600 {token}" in line
    assert "0123456789abcdef0123" not in line
