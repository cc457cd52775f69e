"""Sinks in the daemon as a process: a drop folder's changes reach a real receiver in
order; GET /sinks, metrics and /healthz show them; `ingestd sinks` lists and resets them
with and without a daemon; SIGHUP adds, changes and removes them; SIGKILL mid-delivery
costs duplicates, never a gap."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from ingestd.store.feed import FIRST
from tests.conftest import make_secret
from tests.support.helpers import run_cli, wait_for
from tests.support.receiver import Receiver, verify

DEADLINE = 60.0
pytestmark = pytest.mark.slow


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hook(receiver, name="hook", **options) -> dict:
    return {"name": name, "kind": "webhook", "url": receiver.url, "retry_max": "0.5s", **options}


def drop(env, *names: str) -> None:
    for name in names:
        (env.inbox / name).write_bytes(f"content of {name}\n".encode())


def feed_cursors(d) -> list[str]:
    status, body = d.get("/changes?limit=1000")
    assert status == 200
    return [c["cursor"] for c in body["changes"]]


def sink_view(d, name="hook") -> dict:
    status, body = d.get("/sinks")
    assert status == 200
    return next(s for s in body["sinks"] if s["name"] == name)


def test_changes_reach_the_receiver_and_the_api_shows_the_sink(daemon_env, receiver, tmp_path):
    key = tmp_path / "hook.secret"
    secret = make_secret("hook").encode()
    key.write_bytes(secret)
    key.chmod(0o600)
    daemon_env.write(sinks=[hook(receiver, secret_file=str(key), batch_max=2)])
    d = daemon_env.daemon().start()
    drop(daemon_env, "a.txt", "b.txt", "c.txt")
    wait_for(lambda: len(receiver.cursors()) == 3, DEADLINE, message="three changes delivered")
    assert receiver.cursors() == feed_cursors(d)
    assert all(verify(secret, p["body"], p["headers"]["X-Ingestd-Signature"]) for p in receiver.posts)
    # the cursor is saved after the last answer; the state turns idle once the runner has
    # looked again and found nothing more (a moment later)
    view = wait_for(lambda: (v := sink_view(d))["cursor"] == receiver.cursors()[-1] and v["state"] == "idle" and v,
                    DEADLINE, message="the cursor saved after the last answer, and the sink idle")
    assert view["kind"] == "webhook" and view["lag"] == 0
    assert view["last_error"] is None and view["last_delivery_at"]
    with urllib.request.urlopen(d.base_url + "/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert 'ingestd_sink_lag_changes{sink="hook"} 0.0' in metrics
    assert 'ingestd_sink_deliveries_total{result="failed",sink="hook"} 0.0' in metrics
    assert 'ingestd_sink_deliveries_total{result="ok",sink="hook"}' in metrics
    receiver.script = [401] * 1000
    drop(daemon_env, "d.txt")
    wait_for(lambda: (sink_view(d)["last_error"] or {}).get("code") == "http_status", DEADLINE)
    view = sink_view(d)
    assert view["state"] == "retrying" and view["lag"] == 1 and view["failing_since"]
    assert view["last_error"]["message"] == "the receiver answered HTTP 401"
    status, health = d.get("/healthz")
    assert status == 200 and health["checks"]["sinks"]["ok"] is True  # informational: never a restart
    assert secret.decode() not in json.dumps(sink_view(d)) + d.log_text()
    assert d.stop() == 0


def test_cli_lists_and_resets_through_the_daemon_and_without_one(daemon_env, receiver):
    daemon_env.write(sinks=[hook(receiver)])
    d = daemon_env.daemon().start()
    drop(daemon_env, "a.txt", "b.txt")
    wait_for(lambda: len(receiver.cursors()) == 2, DEADLINE)
    first = receiver.cursors()
    wait_for(lambda: (v := sink_view(d))["lag"] == 0 and v["state"] == "idle", DEADLINE)  # caught up, looked again
    listed = run_cli("sinks", "--json", "--config", daemon_env.config)
    assert listed.returncode == 0, listed.stderr
    row = json.loads(listed.stdout)
    assert row["name"] == "hook" and row["cursor"] == first[-1] and row["state"] == "idle"
    reset = run_cli("sinks", "reset", "hook", "--to", FIRST, "--config", daemon_env.config)
    assert reset.returncode == 0, reset.stderr
    wait_for(lambda: receiver.cursors() == first + first, DEADLINE, message="the replay through the API")
    for bad, code in (("12", 2), ("9999999999999999", 1)):
        out = run_cli("sinks", "reset", "hook", "--to", bad, "--config", daemon_env.config)
        assert out.returncode == code and "Traceback" not in out.stderr
    assert run_cli("sinks", "reset", "nope", "--to", FIRST, "--config", daemon_env.config).returncode == 2
    assert d.post("/sinks/nope/reset", {"to": FIRST})[0] == 404
    assert d.post("/sinks/hook/reset", {"to": "x"})[0] == 400
    assert d.stop() == 0
    offline = run_cli("sinks", "--config", daemon_env.config)
    assert offline.returncode == 0 and "no daemon" in offline.stdout and first[-1] in offline.stdout
    assert run_cli("sinks", "reset", "hook", "--to", first[0], "--config", daemon_env.config).returncode == 0
    d.start()
    wait_for(lambda: receiver.cursors() == first + first + first[1:], DEADLINE, message="the reset taken at start")


def test_sighup_adds_changes_and_removes_sinks(daemon_env, receiver):
    other = Receiver()
    try:
        daemon_env.write(sinks=[hook(receiver)])
        d = daemon_env.daemon().start()
        drop(daemon_env, "a.txt")
        wait_for(lambda: len(receiver.cursors()) == 1, DEADLINE)
        daemon_env.write(sinks=[hook(receiver), hook(other, "second")])
        d.signal(signal.SIGHUP)
        wait_for(lambda: len(other.cursors()) == 1, DEADLINE, message="the added sink replaying the feed")
        daemon_env.write(sinks=[hook(other, "second"), hook(other, "hook")])  # "hook" changed: now the other URL
        d.signal(signal.SIGHUP)
        drop(daemon_env, "b.txt")
        wait_for(lambda: len(other.cursors()) == 3, DEADLINE, message="both sinks on the other receiver")
        assert len(receiver.cursors()) == 1  # its cursor moved on with it: no replay
        daemon_env.write(sinks=[])
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.get("/sinks")[1]["sinks"] == [], DEADLINE)
        drop(daemon_env, "c.txt")
        wait_for(lambda: len(feed_cursors(d)) == 3, DEADLINE)
        assert len(other.cursors()) == 3
        assert d.stop() == 0
    finally:
        other.close()


def test_sigkill_mid_delivery_means_duplicates_never_gaps(daemon_env, receiver):
    daemon_env.write(sinks=[hook(receiver, batch_max=2, timeout="30s")])
    d = daemon_env.daemon().start()
    drop(daemon_env, "a.txt", "b.txt")
    wait_for(lambda: len(receiver.cursors()) == 2, DEADLINE)
    receiver.script = ["hang"]
    drop(daemon_env, "c.txt", "d.txt", "e.txt")
    wait_for(lambda: any(p["status"] == "hang" for p in receiver.posts), DEADLINE, message="a delivery in flight")
    drop(daemon_env, "f.txt")  # a hung receiver never holds ingestion up
    wait_for(lambda: len(feed_cursors(d)) == 6, DEADLINE, message="ingestion going on beside the hung sink")
    d.kill()
    receiver.release.set()
    d.start()
    wait_for(lambda: len(set(receiver.cursors())) == len(feed_cursors(d)) == 6, DEADLINE,
             message="every change delivered after the restart")
    got = receiver.cursors()
    assert sorted(set(got)) == feed_cursors(d)  # no gap
    assert got == sorted(got)  # in order: the batch in flight was not accepted, so it came again whole
    assert d.stop() == 0


def test_a_third_party_sink_runs_and_a_quarantined_one_is_only_unavailable(daemon_env, tmp_path):
    from tests.support.procs import THIRDPARTY, plugin_site

    site = plugin_site(tmp_path, {"file": "ingestd_filesink", "brokensink": "ingestd_brokenplugin"})
    out = tmp_path / "changes.jsonl"
    daemon_env.write(sinks=[{"name": "tofile", "kind": "file", "path": str(out)},
                            {"name": "broken", "kind": "brokensink", "anything": 1}])
    listed = run_cli("plugins", "--json", env={"PYTHONPATH": f"{site}:{THIRDPARTY}"})
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["file"]["sinks"] == ["file"] and rows["webhook"]["sinks"] == ["webhook"]
    d = daemon_env.daemon(pythonpath=[site, THIRDPARTY]).start()
    drop(daemon_env, "a.txt", "b.txt")
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2, DEADLINE)
    assert [json.loads(line)["cursor"] for line in out.read_text().splitlines()] == feed_cursors(d)
    broken = sink_view(d, "broken")
    assert broken["state"] == "unavailable" and "broken on purpose" in broken["last_error"]["message"]
    assert d.get("/healthz")[1]["checks"]["sinks"]["failing"]["broken"]["state"] == "unavailable"
    assert d.stop() == 0
