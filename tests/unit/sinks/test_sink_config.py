"""`[[sinks]]` tables: validated like sources, every problem one line naming file and key."""

from __future__ import annotations

import pytest

from ingestd import config as config_mod
from ingestd.errors import ConfigError
from ingestd.plugin.manager import Plugins
from tests.support.helpers import run_cli

PLUGINS = Plugins().load()


def write(tmp_path, sinks: str) -> config_mod.Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "ingestd.toml"
    path.write_text('[daemon]\nstate_dir = "state"\n[[sources]]\nname = "inbox"\nkind = "local"\npath = "in"\n' + sinks)
    return path


def load(path):
    return config_mod.load(path, PLUGINS.option_models(), PLUGINS.sink_option_models())


def secret(tmp_path, mode=0o600, text=b"0123456789abcdef0123456789abcdef\n"):
    path = tmp_path / "hook.secret"
    path.write_bytes(text)
    path.chmod(mode)
    return path


def test_a_webhook_sink_with_defaults(tmp_path):
    key = secret(tmp_path)
    cfg = load(write(tmp_path, f'[[sinks]]\nname = "idx"\nkind = "webhook"\nurl = "https://idx.example/h?t=1"\n'
                               f'secret_file = "{key.name}"\nsources = ["inbox"]\n'))
    sink = cfg.sink("idx")
    assert (sink.kind, sink.batch_max, sink.retry_max, sink.sources, sink.enabled) == ("webhook", 100, 60.0,
                                                                                        ("inbox",), True)
    assert sink.options.secret_file == key and sink.options.timeout == 10.0


@pytest.mark.parametrize("table, line", [
    ('name = "x"\nkind = "kafka"\n', 'sinks[0] "x": kind: unknown sink kind \'kafka\' (available: webhook)'),
    ('name = "x"\nkind = "webhook"\n', 'sinks[0] "x": url: field required'),
    ('name = "x"\nkind = "webhook"\nurl = "ftp://h/x"\n', 'sinks[0] "x": url: must be an http:// or https:// URL'),
    ('name = "x"\nkind = "webhook"\nurl = "http://u:pw@h/x"\n', "must not carry a user or password"),
    ('name = "x"\nkind = "webhook"\nurl = "http://h/"\nbatch_max = 0\n', 'sinks[0] "x": batch_max: input should be'),
    ('name = "x"\nkind = "webhook"\nurl = "http://h/"\nsources = ["nope"]\n',
     "sinks[0] \"x\": sources: no source named 'nope' (configured: inbox)"),
    ('name = "x"\nkind = "webhook"\nurl = "http://h/"\nurll = 1\n', "unknown key; did you mean 'url'?"),
    ('name = "X Y"\nkind = "webhook"\nurl = "http://h/"\n', 'sinks[0] "X Y": name: must match'),
    ('name = "x"\nkind = "webhook"\nurl = "http://h/"\nsecret_file = "missing.secret"\n',
     "missing.secret: file not found"),
])
def test_each_problem_is_one_line_naming_file_and_key(tmp_path, table, line):
    path = write(tmp_path, "[[sinks]]\n" + table)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert len(err.value.lines) == 1 and err.value.lines[0].startswith(f"{path}: ")
    assert line in err.value.lines[0]


def test_a_secret_file_others_may_read_is_refused_and_the_secret_never_shown(tmp_path):
    key = secret(tmp_path, 0o644)
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, f'[[sinks]]\nname = "x"\nkind = "webhook"\nurl = "http://h/"\nsecret_file = "{key}"\n'))
    assert "too open" in err.value.lines[0] and "0123456789abcdef" not in err.value.lines[0]
    short = secret(tmp_path, 0o600, b"short\n")
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, f'[[sinks]]\nname = "x"\nkind = "webhook"\nurl = "http://h/"\nsecret_file = "{short}"\n'))
    assert "at least 16 characters" in err.value.lines[0] and "short\n" not in err.value.lines[0]


def test_duplicate_names_and_a_url_are_never_repeated_in_errors(tmp_path):
    path = write(tmp_path, '[[sinks]]\nname = "x"\nkind = "webhook"\nurl = "http://h/?token=abcdef"\n'
                           '[[sinks]]\nname = "x"\nkind = "webhook"\nurl = "gopher://h/?token=abcdef"\n')
    with pytest.raises(ConfigError) as err:
        load(path)
    assert len(err.value.lines) == 2 and "duplicate sink name" in err.value.lines[0]
    assert all("abcdef" not in line for line in err.value.lines)


def test_check_config_exits_78_with_every_problem(tmp_path):
    path = write(tmp_path, '[[sinks]]\nname = "x"\nkind = "webhook"\n[[sinks]]\nname = "y"\nkind = "nats"\n')
    result = run_cli("check-config", "--config", path)
    assert result.returncode == 78
    assert result.stderr.splitlines() == [f'{path}: sinks[0] "x": url: field required',
                                          f'{path}: sinks[1] "y": kind: unknown sink kind \'nats\' (available: webhook)']
