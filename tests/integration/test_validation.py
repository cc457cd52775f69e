"""One validation everywhere (issue 23 #5, issue 25 #12): `check-config`, `run`, a reload
and `ingest` apply the same checks; a source with a problem is refused by each, with the
same line, and the others run; warnings stop nothing."""

from __future__ import annotations

import json
import signal

from tests.integration.test_plugins import plugin_env
from tests.support.helpers import manifests, run_cli, wait_for
from tests.upgrade.kit import post

UNREGISTERED = {"name": "bucket", "kind": "s3", "bucket": "reports", "credentials": "prod", "every": "1s",
                "endpoint_url": "http://127.0.0.1:9"}


def test_a_source_check_config_refuses_is_refused_by_run_and_ingest(daemon_env):
    daemon_env.write(extra_sources=[UNREGISTERED])
    check = run_cli("check-config", "--config", daemon_env.config)
    assert check.returncode == 78
    (line,) = check.stderr.splitlines()
    assert line.startswith(f"{daemon_env.config}: ") and "credentials.registry: not set" in line
    once = run_cli("ingest", "bucket", "--config", daemon_env.config)
    assert once.returncode == 78 and once.stderr.splitlines()[-1] == line and not manifests(daemon_env.state)
    d = daemon_env.daemon().start()
    _, sources = d.get("/sources")
    bucket = {s["name"]: s for s in sources["sources"]}["bucket"]
    assert bucket["available"] is False and bucket["remediation"] == line
    status, body = post(d, "/ingest", {"source": "bucket"})
    assert status == 503 and body["error"] == "connector_unavailable" and body["remediation"] == line
    (daemon_env.inbox / "a.txt").write_bytes(b"a")  # the other source runs
    wait_for(lambda: any(m["source"] == "inbox" and m["status"] == "succeeded" for m in d.manifests()), timeout=30)
    assert not [m for m in d.manifests() if m["source"] == "bucket"]  # scheduled every second, never run
    assert d.stop() == 0


def test_a_reload_applies_the_same_checks(daemon_env):
    d = daemon_env.daemon().start()
    daemon_env.write(extra_sources=[UNREGISTERED])
    d.signal(signal.SIGHUP)
    d.notify.wait("READY", "1", after=1, timeout=30)
    wait_for(lambda: "source not started" in d.log_text(), timeout=30, message="the reload's verdict")
    _, sources = d.get("/sources")
    bucket = {s["name"]: s for s in sources["sources"]}["bucket"]
    assert bucket["available"] is False and "credentials.registry: not set" in bucket["remediation"]
    assert not [m for m in d.manifests() if m["source"] == "bucket"]
    assert d.stop() == 0


def test_warnings_stop_nothing_and_are_told_apart(daemon_env, tmp_path):
    folder = tmp_path / "fixture-data"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    daemon_env.write(extra_sources=[{"name": "fx", "kind": "fixture", "folder": str(folder), "every": "1h",
                                     "warn": "expires soon"}])
    env = plugin_env(tmp_path, {"testplugin": "ingestd_testplugin"})
    check = run_cli("check-config", "--config", daemon_env.config, env=env)
    assert check.returncode == 0 and check.stdout.strip() == "ok"
    assert check.stderr.strip() == f'{daemon_env.config}: sources "fx": warn: warning: expires soon'
    once = run_cli("ingest", "fx", "--json", "--config", daemon_env.config, env=env)
    assert once.returncode == 0 and "warning: expires soon" in once.stderr
    d = daemon_env.daemon(env=env).start()
    _, sources = d.get("/sources")
    assert {s["name"]: s["available"] for s in sources["sources"]} == {"inbox": True, "fx": True}
    assert "warning: expires soon" in d.log_text()
    assert d.stop() == 0


def test_jobs_limit_is_validated_as_the_api_validates_it(env):
    """Issue 23 #8: `--limit 0` printed a job and exited 0 while the API answered 400."""
    assert run_cli("ingest", "inbox", "--config", env.config).returncode == 0
    for bad in ("0", "501", "-3"):
        result = run_cli("jobs", "--limit", bad, "--config", env.config)
        assert result.returncode == 2 and result.stdout == "", result
        assert result.stderr.startswith("ingestd: --limit: input should be")
    good = run_cli("jobs", "--limit", "500", "--json", "--config", env.config)
    assert good.returncode == 0 and len(json.loads(good.stdout)) == 1
    bad_cursor = run_cli("jobs", "--before", "../etc", "--config", env.config)
    assert bad_cursor.returncode == 2 and "--before" in bad_cursor.stderr


def test_ingest_of_a_source_whose_connector_is_unavailable_exits_78(tmp_path):
    """Issue 25 #12: the code said 78, the README's table 0 or 1; now both say 78."""
    import subprocess
    import sys

    from tests.support.helpers import write_config

    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "bucket", "kind": "s3", "bucket": "reports"}])
    code = "import sys; sys.modules['boto3'] = None; from ingestd.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "ingest", "bucket", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78 and "pip install 'ingestd[s3]'" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{config}: ") and not manifests(tmp_path / "state")
