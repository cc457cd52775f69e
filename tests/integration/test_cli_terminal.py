"""What a person sees running ingestd at a terminal (a pseudo-terminal here), and what a
pipe gets instead: a live progress line rewritten in place, no per-document log flood, a
summary after the job; through pipes no control characters at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.helpers import manifests, run_cli, wait_for, write_config
from ingestd.app import load_config
from ingestd.console import feeds
from ingestd.plugin.manager import Plugins
from tests.support.procs import THIRDPARTY, Daemon, plugin_site
from tests.support.terminal import ERASE, Terminal

FILES, BEFORE_GATE, REFUSED = 6, 3, 5
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


class Gated:
    """A source whose job stops half-way until `release()`: time to watch it run."""

    def __init__(self, root: Path, http: dict | None = None):
        self.root = root
        self.folder = root / "remote"
        self.folder.mkdir()
        for i in range(FILES):
            (self.folder / f"f{i}.bin").write_bytes(bytes([i]) * 100_000)
        self.gate = root / "gate"
        self.config = write_config(
            root / "ingestd.toml", daemon={"state_dir": "state", "log_format": "json"}, http=http,
            sources=[{"name": "remote", "kind": "gated", "folder": "remote", "gate": "gate",
                      "before_gate": BEFORE_GATE, "refuse": REFUSED}])
        site = plugin_site(root, {"gated": "ingestd_gatedplugin"})
        self.env = {"PYTHONPATH": os.pathsep.join([str(site), str(THIRDPARTY), *sys.path])}
        self.state = root / "state"

    def release(self) -> None:
        self.gate.write_text("go")

    def terminal(self, *args) -> Terminal:
        return Terminal(*args, "--config", self.config, env=self.env)


@pytest.fixture
def gated(tmp_path):
    return Gated(tmp_path)


def summary_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").strip("\n").splitlines()


def held_line() -> str:
    """The live line while the job waits at the gate: every item before it taken."""
    return rf"remote: downloading  {BEFORE_GATE + REFUSED}/{FILES + REFUSED} items  [0-9.]+ KiB/585\.9 KiB"


def test_ingest_on_a_terminal_draws_one_live_line_then_the_summary(gated):
    term = gated.terminal("ingest", "remote")
    try:
        term.read_until(held_line() + rf".*{REFUSED} errors  0:0[1-9]")  # redrawn a second on: it updates
        gated.release()
        assert term.wait() == 1  # partial: five refused
    finally:
        term.kill()
    out = term.output
    drawn = [line for line in out.split(ERASE) if line.startswith("remote: ")]
    assert len(drawn) >= 4 and len(set(drawn)) >= 2, drawn  # rewritten in place, with news
    assert all("\n" not in line for line in drawn[:-1])  # one line, never scrolled
    assert "remote: listing" in out or "remote: downloading" in out
    # the connector's warning is shown, readable, on a line of its own: a live line erased first
    record = re.search(r"\d{4}-\d\d-\d\dT[0-9:.]+Z \[warning\s*\] gated connector waiting", out)
    before = out[:record.start()]
    assert before == "" or before.endswith(("\n", ERASE)), before[-200:]
    # no per-document records, no JSON: the summary tells their story
    assert "document stored" not in out and "document failed" not in out and '{"' not in out
    (job,) = manifests(gated.state)
    lines = summary_lines(term.after_last_line())
    assert re.fullmatch(rf"job {job['job_id']}  source remote \(gated\)  partial in \d+\.\d s", lines[0])
    assert lines[1].startswith(f"  {FILES} ingested, 0 unchanged, 0 skipped, {REFUSED} failed; 585.9 KiB stored at ")
    assert lines[2:8] == ["  errors:", f"    permission ({REFUSED}): access denied by the remote",
                          "      gated://locked/0", "      gated://locked/1", "      gated://locked/2",
                          f"      … and {REFUSED - 3} more"]
    assert lines[-1] == f"  all items: ingestd status {job['job_id']} --items --config {gated.config}"


def test_piped_output_has_no_control_characters_and_logs_stay_json(gated):
    gated.release()
    result = run_cli("ingest", "remote", "--config", gated.config, env=gated.env)
    assert result.returncode == 1, result.stderr
    assert not CONTROL.search(result.stdout) and not CONTROL.search(result.stderr)
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "document stored" in events and "document failed" in events  # the configured JSON, at info
    assert result.stdout.splitlines()[1].startswith(f"  {FILES} ingested")
    as_json = run_cli("ingest", "remote", "--json", "--config", gated.config, env=gated.env)
    assert json.loads(as_json.stdout)["counters"]["unchanged"] == FILES and not CONTROL.search(as_json.stdout)


def test_verbose_shows_document_records_and_quiet_no_line(env):
    (env.inbox / "a.txt").write_bytes(b"a")
    (env.inbox / "empty.txt").write_bytes(b"")
    verbose = Terminal("ingest", "inbox", "-v", "--config", env.config)
    assert verbose.wait() == 0
    assert "document stored" in verbose.output and "document skipped" in verbose.output
    (env.inbox / "b.txt").write_bytes(b"b")
    quiet = Terminal("ingest", "inbox", "--quiet", "--config", env.config)
    assert quiet.wait() == 0
    assert ERASE not in quiet.output and "document stored" not in quiet.output
    assert summary_lines(quiet.output)[1].startswith("  1 ingested, 0 unchanged, 0 skipped, 0 failed")
    assert "originals taken: " in quiet.output


def test_status_follow_watches_a_job_another_process_runs(gated):
    one_shot = subprocess.Popen([sys.executable, "-m", "ingestd", "ingest", "remote", "--json", "--config", str(gated.config)],
                                env={**os.environ, **gated.env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        job = wait_for(lambda: next(iter(m for m in manifests(gated.state) if m.get("progress")), None),
                       timeout=60, message="the one-shot's job running")
        term = gated.terminal("status", job["job_id"], "--follow")
        term.read_until(held_line())
        gated.release()
        assert term.wait() == 1
        lines = summary_lines(term.after_last_line())
        assert lines[0].startswith(f"job {job['job_id']}  source remote (gated)  partial in ")
        assert f"    permission ({REFUSED}): access denied by the remote" in lines
        piped = run_cli("status", job["job_id"], "--follow", "--config", gated.config, env=gated.env)
        assert piped.returncode == 1 and not CONTROL.search(piped.stdout + piped.stderr)
        assert piped.stdout.splitlines()[0].startswith(f"job {job['job_id']}  source remote (gated)  partial")
        as_json = run_cli("status", job["job_id"], "--follow", "--json", "--config", gated.config, env=gated.env)
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["items_file"] == job["items_file"]
    finally:
        one_shot.kill()
        one_shot.wait()


def test_following_a_job_whose_process_was_killed_ends_with_an_error(gated):
    """A one-shot killed mid-job cannot mark its job: the watchers used to wait on its
    `running` manifest forever. They tell it from a job still running (the source's lock)."""
    one_shot = subprocess.Popen([sys.executable, "-m", "ingestd", "ingest", "remote", "--config", str(gated.config)],
                                env={**os.environ, **gated.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        job = wait_for(lambda: next(iter(m for m in manifests(gated.state) if m.get("progress")), None),
                       timeout=60, message="the one-shot's job running")
        disk = feeds.DiskFeed(gated.state)
        running = disk.job(job["job_id"])
        assert running.status == "running" and not disk.abandoned(running)  # its process holds the lock
        assert [m.job_id for m in disk.active(None)] == [job["job_id"]]
    finally:
        one_shot.kill()
        one_shot.wait()
    assert disk.job(job["job_id"]).status == "running" and disk.abandoned(disk.job(job["job_id"]))
    watched = run_cli("status", job["job_id"], "--follow", "--config", gated.config, env=gated.env, timeout=30)
    assert watched.returncode == 1 and watched.stdout == ""
    assert watched.stderr.strip() == (
        f"ingestd: job {job['job_id']} is still marked running, but no process runs it any more (the one that did "
        "stopped without finishing it); the next job of source 'remote' records it as interrupted")
    nothing = run_cli("jobs", "--follow", "--config", gated.config, env=gated.env, timeout=30)
    assert nothing.returncode == 0 and nothing.stdout == "no job is running or queued\n"
    gated.release()
    after = run_cli("ingest", "remote", "--json", "--config", gated.config, env=gated.env)  # the next job closes it
    assert after.returncode == 1, after.stderr
    closed = next(m for m in manifests(gated.state) if m["job_id"] == job["job_id"])
    assert closed["status"] == "failed" and closed["errors"][-1]["code"] == "interrupted"


def test_jobs_follow_reads_a_running_daemon(tmp_path):
    token = tmp_path / "token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    # port 0: the address is found in daemon.json; the token is sent
    gated = Gated(tmp_path, http={"listen": "127.0.0.1:0", "token_file": "token"})
    daemon = Daemon(gated.config, gated.state, tmp_path, env=gated.env).start()
    try:
        status, body = _post(daemon, "/ingest", {"source": "remote"}, "t" * 32)
        assert status == 202, body
        term = gated.terminal("jobs", "--follow")
        term.read_until(held_line())
        assert isinstance(feeds.feed(_config(gated)), feeds.ApiFeed)  # the daemon's memory, not the files
        token.write_text("w" * 32)  # a token the daemon refuses: the files, not an error
        assert isinstance(feeds.feed(_config(gated)), feeds.DiskFeed)
        gated.release()
        assert term.wait() == 0
        lines = summary_lines(term.after_last_line())
        assert lines[0].startswith(f"job {body['job_id']}  source remote (gated)  partial in ")
        nothing = run_cli("jobs", "--follow", "--config", gated.config, env=gated.env)
        assert nothing.returncode == 0 and nothing.stdout == "no job is running or queued\n"
    finally:
        daemon.close()


def _config(gated: Gated):
    sys.path[:0] = gated.env["PYTHONPATH"].split(os.pathsep)[:2]  # the gated plugin, for its options
    try:
        plugins = Plugins().load()
        return load_config(gated.config, plugins)
    finally:
        del sys.path[:2]


def _post(daemon, path: str, body: dict, token: str):
    req = urllib.request.Request(daemon.base_url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())
