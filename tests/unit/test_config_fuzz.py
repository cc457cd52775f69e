"""Whatever is in the config file, the answer is a Config or a clean ConfigError."""

import os
import tomllib

from hypothesis import HealthCheck, given, settings, strategies as st

from ingestd import config as config_mod
from ingestd.errors import ConfigError
from ingestd.plugin.manager import Plugins

PLUGINS = Plugins().load()
MODELS, SINK_MODELS = PLUGINS.option_models(), PLUGINS.sink_option_models()
EXAMPLES = int(os.environ.get("INGESTD_FUZZ_EXAMPLES", "300"))

keys = st.sampled_from(["name", "kind", "path", "enabled", "every", "cron", "bucket", "state_dir", "workers",
                        "listen", "after", "ignore", "settle_seconds", "x", "", "é", "../", "url", "secret_file",
                        "sources", "batch_max", "retry_max", "timeout"]) | st.text(max_size=8)
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
           | st.sampled_from(["local", "s3", "sharepoint", "webhook", "http://127.0.0.1:9/x", "5m", "*/5 * * * *", "bad cron", "-1s", "inbox"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)
documents = st.fixed_dictionaries({}, optional={
    "daemon": st.dictionaries(keys, values, max_size=4),
    "http": st.dictionaries(keys, values, max_size=3),
    "credentials": values,
    "sources": st.lists(st.dictionaries(keys, values, max_size=6), max_size=4) | values,
    "sinks": st.lists(st.dictionaries(keys, values, max_size=6), max_size=3) | values,
}) | st.dictionaries(keys, values, max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_validate_or_fail_cleanly(doc):
    try:
        config_mod.parse(doc, MODELS, base_dir=config_mod.Path("/tmp"), label="f.toml", sink_models=SINK_MODELS)
    except ConfigError as exc:
        assert exc.lines and all(line.startswith("f.toml") for line in exc.lines)
        assert all("\n" not in line and "Traceback" not in line for line in exc.lines)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_fail_cleanly(tmp_path, raw):
    path = tmp_path / "c.toml"
    path.write_bytes(raw)
    try:
        config_mod.load(path, MODELS)
    except ConfigError as exc:
        assert exc.lines and all(str(path) in line for line in exc.lines)


def test_toml_values_that_python_cannot_compare_are_still_clean(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[daemon]\nworkers = nan\nshutdown_timeout = inf\n')
    tomllib.loads(path.read_text())
    try:
        config_mod.load(path, MODELS)
        raise AssertionError("nan workers accepted")
    except ConfigError as exc:
        assert any("daemon.workers" in line for line in exc.lines)
        assert any("daemon.shutdown_timeout" in line for line in exc.lines)
