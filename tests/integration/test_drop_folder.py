"""What the README promises about a drop folder, checked on the daemon as a process:
health when the folder goes away, polling and slow writers, keep semantics, files that
cannot be taken, and watched connectors from other packages."""

from __future__ import annotations

import json
import os
import time

from tests.support.helpers import make_chain, run_cli, wait_for


def jobs_after(d, count: int, seconds: float) -> list[dict]:
    """The manifests once `seconds` have passed with no more than `count` jobs in total (fails
    as soon as there are more): how a test sees that nothing is queued again and again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        manifests = d.manifests()
        assert len(manifests) <= count, [(m["status"], m["counters"]) for m in manifests]
        time.sleep(0.1)
    return d.manifests()


def test_healthz_fails_within_seconds_when_the_drop_folder_is_deleted(daemon_env):
    d = daemon_env.daemon().start()
    assert d.get("/healthz")[0] == 200
    daemon_env.inbox.rmdir()
    status, body = wait_for(lambda: (r := d.get("/healthz"))[0] == 503 and r, timeout=10, message="503")
    assert body["failing"] == ["watchers"] and body["checks"]["watchers"]["sources"]["inbox"]["problem"] == "missing"
    daemon_env.inbox.mkdir()
    wait_for(lambda: d.get("/healthz")[0] == 200, timeout=10, message="healthy again")
    (daemon_env.inbox / "back.txt").write_bytes(b"the folder is watched again")
    wait_for(lambda: any(m["counters"]["ingested"] for m in d.manifests()), timeout=20)
    assert d.stop() == 0


def test_polling_waits_for_a_writer_that_pauses_with_the_file_open(daemon_env):
    daemon_env.write(poll=True, settle_seconds=0.5)
    d = daemon_env.daemon().start()
    path = daemon_env.inbox / "slow.txt"
    with open(path, "wb") as fh:
        fh.write(b"part1 ")
        fh.flush()
        time.sleep(3.0)  # the slow writer under test: it pauses well past settle_seconds
        fh.write(b"part2")
    wait_for(lambda: d.documents(), timeout=20)
    [(sha, size, _)] = next(iter(d.documents().values()))
    assert size == len(b"part1 part2"), "a polled file was taken while its writer still had it open"
    assert d.stop() == 0


def test_keep_remembers_a_file_refused_for_good_and_a_restart_makes_no_empty_job(daemon_env):
    daemon_env.write(after="keep", max_file_size=10)
    (daemon_env.inbox / "big.txt").write_bytes(b"x" * 11)
    (daemon_env.inbox / "ok.txt").write_bytes(b"fine")
    d = daemon_env.daemon().start()
    wait_for(lambda: len(d.manifests()) == 1 and d.idle(), timeout=20)
    [first] = jobs_after(d, 1, 3.0)
    assert first["status"] == "partial" and first["counters"]["failed"] == 1 and first["counters"]["ingested"] == 1
    assert d.stop() == 0
    d.start()  # the catch-up scan finds both files again
    assert len(jobs_after(d, 1, 3.0)) == 1, "a restart with keep made a job"
    (daemon_env.inbox / "big.txt").write_bytes(b"smaller")  # changed: a new candidate
    wait_for(lambda: len(d.manifests()) == 2 and d.idle(), timeout=20)
    assert d.manifests()[-1]["status"] == "succeeded"
    assert d.stop() == 0


def test_a_tree_nested_too_deep_is_reported_once_and_never_queued_in_a_loop(daemon_env):
    d = daemon_env.daemon().start()
    staging = daemon_env.root / "staging"
    make_chain(staging, [f"d{i}" for i in range(70)] + ["deep.txt"], b"deep")  # past the 64 folders allowed
    os.rename(staging / "d0", daemon_env.inbox / "d0")  # moved in: the watcher scans the new folder
    jobs_after(d, 1, 4.0)  # at most one job (for the file an event reported): no loop
    wait_for(lambda: "not searched" in d.log_text(), timeout=20)
    warnings = [e for e in d.log_events() if e.get("event") == "part of the drop folder not searched"]
    assert len(warnings) == 1 and warnings[0]["code"] == "invalid_name"
    assert d.stop() == 0


def test_a_watched_kind_without_the_contract_is_refused_and_the_rest_runs(daemon_env):
    from tests.integration.test_plugins import plugin_env

    env = plugin_env(daemon_env.root, {"badwatch": "ingestd_badwatchplugin"})
    d = daemon_env.daemon(env=env).start()
    (daemon_env.inbox / "a.txt").write_bytes(b"a")
    wait_for(lambda: d.manifests() and d.idle(), timeout=20)
    assert d.manifests()[0]["status"] == "succeeded"
    listing = json.loads(run_cli("plugins", "--json", env=env).stdout)
    kinds = {k["kind"]: k for k in {r["name"]: r for r in listing}["badwatch"]["connectors"]}
    assert not kinds["bare-watched"]["available"]
    assert "needs the watched-connector contract" in kinds["bare-watched"]["remediation"]
    assert d.stop() == 0


def test_a_source_of_a_refused_watched_kind_is_unavailable_with_its_reason(daemon_env):
    """Issue 25, item 2: such a source crashed `ingestd run` when its watcher started."""
    from tests.integration.test_plugins import plugin_env

    daemon_env.write(extra_sources=[{"name": "bare", "kind": "bare-watched", "folder": "inbox"}])
    d = daemon_env.daemon(env=plugin_env(daemon_env.root, {"badwatch": "ingestd_badwatchplugin"})).start()
    _, body = d.get("/sources")
    row = {s["name"]: s for s in body["sources"]}["bare"]
    assert row["available"] is False and "needs the watched-connector contract" in row["remediation"], row
    (daemon_env.inbox / "b.txt").write_bytes(b"b")
    wait_for(lambda: any(m["source"] == "inbox" and m["status"] == "succeeded" for m in d.manifests()),
             timeout=20, message="the drop folder's job")
    assert "Traceback" not in d.log_text()
    assert d.stop() == 0
