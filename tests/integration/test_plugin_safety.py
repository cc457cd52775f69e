"""No plugin mistake takes the daemon down or touches what ingestd records (issue 25).

The plugins are installed by entry point, as pip would install them: broken connector
classes (`ingestd_contractplugin`), a plugin that fails to import (`ingestd_brokenplugin`,
entry point `broken`), and misbehaving hooks (`ingestd_hookplugin`).
"""

import json
import urllib.request

from tests.integration.test_plugins import plugin_env
from tests.support.helpers import run_cli, wait_for, write_config

BAD = {"contract": "ingestd_contractplugin", "broken": "ingestd_brokenplugin"}
REASONS = {  # a source of each refused kind, and what every surface must say about it
    "no-options": "connector NoOptions: has no Options",
    "no-stage": "connector NoStage: does not implement stage(self, ctx)",
    "readme-style": "must subclass ingestd.plugin.ScheduleOptions",
    "broken-dep": "ingestd_brokendep_lib (installed but broken: RuntimeError: this dependency is installed but broken)",
    "broken": "plugin 'broken' is quarantined: failed to load: RuntimeError: this plugin is broken on purpose",
}


def bad_sources(folder) -> list[dict]:
    return [{"name": f"src-{kind}", "kind": kind, "folder": str(folder)} for kind in REASONS]


# -- the CLI ----------------------------------------------------------------------------


def test_plugins_lists_each_refused_kind_with_its_reason(tmp_path):
    result = run_cli("plugins", "--json", env=plugin_env(tmp_path, BAD))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    contract = rows["contract"]
    assert contract["status"] == "loaded"  # its good kind works beside the refused ones
    kinds = {k["kind"]: k for k in contract["connectors"]}
    assert kinds["contract-ok"]["available"] and kinds["contract-ok"]["description"] == "every file in a folder"
    for kind in ("no-options", "no-stage", "readme-style", "broken-dep"):
        assert not kinds[kind]["available"] and REASONS[kind] in kinds[kind]["remediation"], kinds[kind]
    assert rows["broken"]["status"] == "quarantined"
    text = run_cli("plugins", env=plugin_env(tmp_path, BAD)).stdout
    assert "connector no-stage: unavailable (connector NoStage: does not implement stage" in text


def test_a_refused_kind_nobody_uses_breaks_no_command(tmp_path):
    """Item 1: a connector class without Options crashed every config-loading command."""
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "inbox", "kind": "local", "path": "inbox"}])
    env = plugin_env(tmp_path, BAD)
    check = run_cli("check-config", "--config", config, env=env)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stderr
    jobs = run_cli("jobs", "--config", config, env=env)
    assert jobs.returncode == 0, jobs.stderr


def test_check_config_gives_the_reason_for_each_refused_source(tmp_path):
    """Items 3, 9, 10, 11: the reason, not "unknown connector", and no traceback."""
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"}, sources=bad_sources(tmp_path))
    check = run_cli("check-config", "--config", config, env=plugin_env(tmp_path, BAD))
    assert check.returncode == 78, check.stderr
    lines = check.stderr.strip().splitlines()
    for kind, reason in REASONS.items():
        line = next(line for line in lines if line.startswith(f'{config}: sources "src-{kind}"'))
        assert f"connector {kind!r} is unavailable" in line and reason in line, line
    assert "unknown connector" not in check.stderr and "Traceback" not in check.stderr


def test_ingest_of_a_refused_source_says_why(tmp_path):
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"}, sources=bad_sources(tmp_path))
    result = run_cli("ingest", "src-broken-dep", "--config", config, env=plugin_env(tmp_path, BAD))
    assert result.returncode == 78 and REASONS["broken-dep"] in result.stderr
    assert "Traceback" not in result.stderr


# -- the daemon -------------------------------------------------------------------------


def test_daemon_runs_the_rest_and_reports_each_refused_source(daemon_env):
    """Item 9: the sources of refused kinds are listed as unavailable with the reason, on
    /sources and /healthz; the drop folder and the good connector run."""
    folder = daemon_env.root / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    good = {"name": "good", "kind": "contract-ok", "folder": str(folder), "every": "1h"}
    daemon_env.write(extra_sources=[good, *bad_sources(folder)])
    d = daemon_env.daemon(env=plugin_env(daemon_env.root, BAD)).start()

    status, body = d.get("/sources")
    assert status == 200
    sources = {s["name"]: s for s in body["sources"]}
    for kind, reason in REASONS.items():
        row = sources[f"src-{kind}"]
        assert row["available"] is False and reason in row["remediation"], row
    assert sources["good"]["available"] and sources["good"]["schedule"] == "every 3600s"

    _, health = d.get("/healthz")
    problems = health["checks"]["plugins"]["problems"]  # each refused class or plugin, once
    for reason in ("has no Options", "does not implement stage", "must subclass ingestd.plugin.ScheduleOptions",
                   "broken on purpose"):
        assert sum(1 for p in problems if reason in p["reason"]) == 1, (reason, problems)
    unavailable = health["checks"]["sources"]["unavailable"]  # each source it leaves out, once
    assert {name for name in unavailable} == {f"src-{kind}" for kind in REASONS}

    status, refused = d.post("/ingest", {"source": "src-no-stage"})
    assert status == 503 and REASONS["no-stage"] in refused["remediation"]
    (daemon_env.inbox / "dropped.txt").write_text("still ingested\n")
    wait_for(lambda: any(m["source"] == "inbox" and m["status"] == "succeeded" for m in d.manifests()),
             timeout=20, message="the drop folder's job")
    wait_for(lambda: any(m["source"] == "good" and m["status"] == "succeeded" for m in d.manifests()),
             timeout=20, message="the good scheduled source's first run")
    assert d.stop() == 0


# -- hooks ------------------------------------------------------------------------------

HOOKS = {"testplugin": "ingestd_testplugin", "hooks": "ingestd_hookplugin"}


def fixture_config(tmp_path, files: int = 3, **extra):
    folder = tmp_path / "fixture-data"
    folder.mkdir()
    for i in range(files):
        (folder / f"f{i}.txt").write_text(f"fixture {i}\n")
    return write_config(tmp_path / "c.toml", daemon={"state_dir": "state", "log_format": "json"},
                        sources=[{"name": "fx", "kind": "fixture", "folder": str(folder), **extra}])


def seen(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_hook_failures_are_logged_with_the_job_context(tmp_path):
    """Item 4: job_id, source and doc_id on the line that reports a failed hook."""
    config = fixture_config(tmp_path)
    env = {**plugin_env(tmp_path, HOOKS), "INGESTD_TEST_HOOK_RAISE": "1"}
    result = run_cli("ingest", "fx", "--json", "--config", config, env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    failures = [json.loads(line) for line in result.stderr.splitlines() if "plugin hook failed" in line]
    assert len(failures) == 3
    docs = {f["doc_id"] for f in failures}
    assert len(docs) == 3 and all(f["job_id"] == manifest["job_id"] and f["source"] == "fx" for f in failures)
    assert all(f["plugin"] == "hooks" and f["hook"] == "document_stored" for f in failures)
    assert all("hook broken on purpose" in f["exception"] for f in failures)


def test_hooks_get_snapshots_they_cannot_change(tmp_path):
    """Item 6: a hook setting the status or counters, or adding metadata, changes nothing
    ingestd records, and is told so (the snapshot refuses)."""
    config = fixture_config(tmp_path)
    hook_seen = tmp_path / "seen.jsonl"
    env = {**plugin_env(tmp_path, HOOKS), "INGESTD_TEST_HOOK_MUTATE": "1", "INGESTD_TEST_HOOK_SEEN": str(hook_seen)}
    result = run_cli("ingest", "fx", "--json", "--config", config, env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    on_disk = json.loads((tmp_path / "state" / "jobs" / f"{manifest['job_id']}.json").read_text())
    for m in (manifest, on_disk):
        assert m["status"] == "succeeded" and m["counters"]["ingested"] == 3
    calls = seen(hook_seen)
    assert [c["hook"] for c in calls] == ["document_stored"] * 3 + ["job_finished"]
    assert all(outcome != "changed" for c in calls for outcome in c["tried"].values()), calls
    assert calls[-1]["status"] == "succeeded"
    show = run_cli("document", calls[0]["doc_id"], "--json", "--config", config, env=env)
    assert "evil" not in json.loads(show.stdout)["metadata"]


def test_a_slow_hook_holds_neither_the_job_nor_its_source(daemon_env):
    """Item 5: the job finishes and its source takes the next job while every hook call
    of it is still waiting; the calls run once the hook is free."""
    folder = daemon_env.root / "fixture-data"
    folder.mkdir()
    for i in range(3):
        (folder / f"f{i}.txt").write_text(f"fixture {i}\n")
    hold, hook_seen = daemon_env.root / "hold", daemon_env.root / "seen.jsonl"
    hold.write_text("")
    daemon_env.write(extra_sources=[{"name": "fx", "kind": "fixture", "folder": str(folder), "every": "1h"}])
    env = {**plugin_env(daemon_env.root, HOOKS), "INGESTD_TEST_HOOK_HOLD": str(hold),
           "INGESTD_TEST_HOOK_SEEN": str(hook_seen)}
    d = daemon_env.daemon(env=env).start()
    first = wait_for(lambda: next((m for m in d.manifests() if m["source"] == "fx" and m["status"] == "succeeded"),
                                  None), timeout=20, message="the scheduled job to finish while its hooks wait")
    (folder / "new.txt").write_text("new\n")
    # the source is freed moments after the manifest says succeeded (not behind the hooks)
    second = wait_for(lambda: (lambda r: r[0] == 202 and r[1])(d.post("/ingest", {"source": "fx"})),
                      timeout=20, message="POST /ingest accepted while the first job's hooks wait")
    wait_for(lambda: d.get(f"/ingest/{second['job_id']}")[1]["status"] == "succeeded", timeout=20)
    assert seen(hook_seen) == []  # every call is still waiting behind the held one
    _, health = d.get("/healthz")
    lane = health["checks"]["plugins"]["hooks"]["hooks"]
    assert lane["queued"] >= 1 and lane["dropped"] == 0
    assert metric(d, 'ingestd_plugin_hook_queue{plugin="hooks"}') >= 1
    hold.unlink()
    wait_for(lambda: len(seen(hook_seen)) == 6, timeout=20, message="the held hook calls")
    calls = seen(hook_seen)
    assert [c["job_id"] for c in calls] == [first["job_id"]] * 4 + [second["job_id"]] * 2
    assert [c["hook"] for c in calls] == ["document_stored"] * 3 + ["job_finished"] + ["document_stored", "job_finished"]
    wait_for(lambda: metric(d, 'ingestd_plugin_hook_calls_total{outcome="ok",plugin="hooks"}') == 6, timeout=10)
    assert metric(d, 'ingestd_plugin_hook_calls_total{outcome="dropped",plugin="hooks"}') == 0
    assert d.stop() == 0


def metric(d, series: str) -> float:
    with urllib.request.urlopen(d.base_url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no {series} in /metrics")

