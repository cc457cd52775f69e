"""Plugins load by entry point exactly as a third-party package would."""

import json
import os
import subprocess
import sys

from tests.support.helpers import run_cli, wait_for, write_config
from tests.support.procs import THIRDPARTY, plugin_site

PLUGINS = {"testplugin": "ingestd_testplugin", "broken": "ingestd_brokenplugin", "typo": "ingestd_typoplugin"}


def plugin_env(tmp_path, plugins=PLUGINS):
    site = plugin_site(tmp_path, plugins)
    return {"PYTHONPATH": os.pathsep.join([str(site), str(THIRDPARTY), *sys.path])}


def test_plugins_listing_quarantines_broken_ones(tmp_path):
    result = run_cli("plugins", "--json", env=plugin_env(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["local"]["status"] == "loaded"
    assert rows["local"]["connectors"] == [{"kind": "local", "available": True, "remediation": None,
                                            "description": "a drop folder on local disk"}]
    assert rows["testplugin"]["status"] == "loaded" and rows["testplugin"]["version"] == "0.1"
    assert rows["testplugin"]["connectors"][0]["kind"] == "fixture"
    assert rows["broken"]["status"] == "quarantined" and "broken on purpose" in rows["broken"]["error"]
    assert rows["typo"]["status"] == "quarantined" and "document_stord" in rows["typo"]["error"]


def test_missing_dependency_is_reported_with_the_remedy(tmp_path):
    code = ("import sys; sys.modules['boto3'] = None; from ingestd.cli import main; "
            "sys.exit(main(sys.argv[1:]))")

    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "bucket", "kind": "s3", "bucket": "reports"}])
    listing = subprocess.run([sys.executable, "-c", code, "plugins"], capture_output=True, text=True)
    assert "connector s3: unavailable" in listing.stdout and "pip install 'ingestd[s3]'" in listing.stdout
    check = subprocess.run([sys.executable, "-c", code, "check-config", "--config", str(config)],
                           capture_output=True, text=True)
    assert check.returncode == 78
    assert "sources \"bucket\": connector 's3' is unavailable" in check.stderr
    assert "pip install 'ingestd[s3]'" in check.stderr and "Traceback" not in check.stderr


def test_third_party_connector_and_document_hooks(tmp_path):
    folder = tmp_path / "fixture-data"
    folder.mkdir()
    for i in range(3):
        (folder / f"f{i}.txt").write_text(f"fixture {i}\n")
    gone = tmp_path / "gone"
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "fx", "kind": "fixture", "folder": str(folder), "gone": str(gone)}])
    hook_log = tmp_path / "hook.log"
    plugins = {"testplugin": "ingestd_testplugin", "legacyhook": "ingestd_legacyhookplugin"}
    env = {**plugin_env(tmp_path, plugins), "INGESTD_TEST_HOOK_LOG": str(hook_log)}
    result = run_cli("ingest", "fx", "--json", "--config", config, env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["kind"] == "fixture" and manifest["counters"]["ingested"] == 3
    lines = [line.split() for line in hook_log.read_text().splitlines()]
    stored = [line for line in lines if line[0] == "stored"]
    assert len(stored) == 3 and all(line[1] == manifest["job_id"] for line in stored)
    assert sorted(line[4] for line in stored) == ["0000000000000001", "0000000000000002", "0000000000000003"]
    assert sum(1 for line in lines if line[0] == "legacy") == 3  # a hook without `cursor` is still called

    (folder / "f1.txt").unlink()
    gone.write_text("f1.txt\n")
    hook_log.unlink()
    result = run_cli("ingest", "fx", "--json", "--config", config, env=env)
    assert result.returncode == 0, result.stderr
    second = json.loads(result.stdout)
    assert second["counters"]["deleted"] == 1
    deleted = [line.split() for line in hook_log.read_text().splitlines() if line.startswith("deleted")]
    doc = json.loads(run_cli("changes", "--after", "0000000000000003", "--json", "--config", config, env=env).stdout)
    assert deleted == [["deleted", second["job_id"], doc["doc_id"], doc["sha256"], "0000000000000004"]]
    assert doc["type"] == "deleted" and doc["origin_uri"] == "fixture://f1.txt"


def held_fixture_source(daemon_env, every: str):
    """A daemon config with a `fixture` source whose jobs wait while the returned file exists."""
    folder = daemon_env.root / "fixture-data"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    hold = daemon_env.root / "hold"
    hold.write_text("")
    daemon_env.write(extra_sources=[{"name": "fx", "kind": "fixture", "folder": str(folder),
                                     "every": every, "hold_while": str(hold)}])
    return hold


def test_scheduled_source_runs_and_overlaps_are_skipped(daemon_env):
    hold = held_fixture_source(daemon_env, "1s")
    env = plugin_env(daemon_env.root, {"testplugin": "ingestd_testplugin"})
    d = daemon_env.daemon(env=env).start()
    wait_for(lambda: "scheduled run skipped" in d.log_text(), timeout=20, message="an overlapping run")
    running = [m for m in d.manifests() if m["source"] == "fx"]
    assert len(running) == 1 and running[0]["trigger"] == "schedule" and running[0]["status"] == "running"
    hold.unlink()
    wait_for(lambda: sum(1 for m in d.manifests() if m["source"] == "fx" and m["status"] == "succeeded") >= 2,
             timeout=20, message="two scheduled runs")
    assert d.stop() == 0


def test_shutdown_timeout_interrupts_a_running_job(daemon_env):
    held_fixture_source(daemon_env, "1h")
    text = daemon_env.config.read_text().replace("shutdown_timeout = 10", "shutdown_timeout = 0.5")
    daemon_env.config.write_text(text)
    d = daemon_env.daemon(env=plugin_env(daemon_env.root, {"testplugin": "ingestd_testplugin"})).start()
    wait_for(lambda: any(m["source"] == "fx" and m["status"] == "running" for m in d.manifests()), timeout=20)
    assert d.stop(timeout=20) == 0
    job = next(m for m in d.manifests() if m["source"] == "fx")
    assert job["status"] == "failed" and job["errors"][-1]["code"] == "interrupted"
