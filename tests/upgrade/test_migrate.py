"""`ingestd migrate` on a state made by 0.1.0: `--check` before and after, read-only
commands on an unmigrated state, and the refusal of a state from a newer ingestd.

These need only the state, so they unpack the archive themselves (no remotes: nothing
here syncs) and run this checkout's CLI on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingestd.state.steps import CORE, latest
from tests.support.helpers import run_cli
from tests.support.procs import Daemon

from . import archive
from .installation import FIXTURES

NEWER = latest(CORE) + 1  # a schema this checkout does not know


@pytest.fixture
def inst(tmp_path) -> Path:
    """A fresh copy of the v0.1.0 installation: `ingestd.toml` and `state/` beside it."""
    return archive.unpack(FIXTURES / "v0.1.0.tar.gz", tmp_path / "installation")


def cli(root: Path, *args: str):
    result = run_cli(*args, "--config", root / "ingestd.toml")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def tree(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


def marker(state: Path) -> dict:
    return json.loads((state / "SCHEMA.json").read_text())


def test_check_says_what_migrate_does_and_writes_nothing(inst):
    state = inst / "state"
    before = tree(state)
    check = cli(inst, "migrate", "--check")
    assert check.returncode == 3, check
    lines = check.stdout.splitlines()
    assert lines[0] == f"state {state}: schema 1 → 4, 3 step(s) pending"
    assert lines[1].startswith("  2 schema-marker: ")
    assert lines[2].startswith("  3 text-catalogue: ")
    assert lines[3].startswith("  4 change-feed: ")
    assert "source bucket (s3): schema 1, up to date" in lines
    assert "source legal (sharepoint): schema 1 → 2, 1 step(s) pending" in lines
    assert any(line.startswith("  2 per-library-state: ") for line in lines)
    assert lines[-1].startswith("4 pending: `ingestd migrate`")
    assert tree(state) == before, "--check wrote to the state"

    done = cli(inst, "migrate")
    assert done.returncode == 0, done
    applied = done.stdout.splitlines()
    assert [line.rsplit(" (", 1)[0] for line in applied] == [
        f"state {state}: applied 2 schema-marker", f"state {state}: applied 3 text-catalogue",
        f"state {state}: applied 4 change-feed",
        "source legal (sharepoint): applied 2 per-library-state"], applied
    after = tree(state)
    legal = "sources/legal/"
    assert sorted(k for k in set(after) - set(before) if not k.startswith(legal)) == ["SCHEMA.json", "SCHEMA.lock"]
    changed = sorted(k for k, v in after.items() if k in before and v != before[k] and not k.startswith(legal))
    assert changed == ["documents.sqlite"], "the core steps changed more than the marker and the catalogue"
    # the SharePoint step moved its one library's file under libraries/ and indexed it
    assert f"{legal}sharepoint.sqlite" in after and f"{legal}SCHEMA.json" in after
    assert len([k for k in after if k.startswith(f"{legal}libraries/") and k.endswith(".sqlite")]) == 1
    assert marker(state)["schema"] == 4
    assert [(h["version"], h["step"]) for h in marker(state)["history"]] == [(2, "schema-marker"),
                                                                            (3, "text-catalogue"), (4, "change-feed")]

    check = cli(inst, "migrate", "--check")
    assert (check.returncode, check.stdout.splitlines()[-1]) == (0, "up to date: nothing to migrate"), check
    assert f"state {state}: schema 4, up to date" in check.stdout.splitlines()
    again = cli(inst, "migrate")
    assert (again.returncode, again.stdout) == (0, "up to date: nothing to migrate\n")
    assert tree(state) == after, "a second migrate changed the state"


def test_read_only_commands_refuse_an_unmigrated_state_and_leave_it_alone(inst):
    """The change-feed step (4) is not read-safe (this code reads only the catalogue it
    makes): `jobs`, `document`, `text` and `changes` on a 0.1.0 state say to migrate,
    exit 3, and leave it unmarked (only a lock file appears)."""
    state = inst / "state"
    answers = json.loads((inst / "recorded" / "answers.json").read_text())["cli"]
    before = tree(state)
    doc_id = sorted(answers["documents"])[0]
    for args in (("jobs", "--json"), ("document", doc_id, "--json"), ("text", doc_id, "--json"), ("changes",)):
        result = cli(inst, *args)
        assert result.returncode == 3, (args, result)
        assert "pending: 4 change-feed" in result.stderr and "ingestd migrate" in result.stderr, (args, result)
    assert not (state / "SCHEMA.json").exists(), "a read-only command migrated"
    assert set(tree(state)) - set(before) <= {"SCHEMA.lock"}
    assert {k: v for k, v in tree(state).items() if k in before} == before


def test_a_state_from_a_newer_ingestd_is_refused_by_every_command(inst, tmp_path):
    state = inst / "state"
    (state / "SCHEMA.json").write_text(json.dumps({"schema": NEWER, "history": []}))
    before = tree(state)
    for args in (("jobs",), ("document", "0" * 32), ("ingest", "drop"), ("migrate",), ("migrate", "--check")):
        result = cli(inst, *args)
        assert result.returncode == 76, (args, result)
        said = result.stdout + result.stderr
        assert f"schema {NEWER}, newer than this ingestd" in said and "docs/upgrading.md" in said, (args, said)

    daemon = Daemon(inst / "ingestd.toml", state, tmp_path).start(ready=False)
    try:
        assert daemon.proc.wait(timeout=60) == 76, daemon.log_text()[-2000:]
        assert not any("READY" in m for m in notified(daemon)), "the daemon said it was ready"
        assert f"is at schema {NEWER}, newer than this ingestd" in daemon.log_text()
    finally:
        daemon.close()
    assert {k: v for k, v in tree(state).items() if k != "SCHEMA.lock"} == before, "a refusing command wrote"


def notified(daemon: Daemon) -> list[dict]:
    """Every sd_notify message of a daemon that has exited (all are queued already)."""
    daemon.notify.sock.setblocking(False)
    while True:
        try:
            data = daemon.notify.sock.recv(65536)
        except BlockingIOError:
            return daemon.notify.messages
        daemon.notify.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))


def test_a_source_state_from_a_newer_plugin_is_refused(inst):
    """The same holds for a connector's own directory, versioned by its plugin's steps."""
    (inst / "state" / "sources" / "keep" / "SCHEMA.json").write_text(
        json.dumps({"schema": NEWER, "kind": "local", "history": []}))
    result = cli(inst, "jobs")
    assert result.returncode == 76, result
    assert f"source keep (local) is at schema {NEWER}" in result.stderr
