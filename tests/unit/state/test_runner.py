"""The migration runner in-process: the plugin seam (a connector's steps on its sources'
own directories), fresh states, read-only refusal, and a failing step."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingestd.errors import IngestdError, MigrationPending, SchemaTooNew
from ingestd.plugin import Connector, Step, StepContext
from ingestd.plugin.kit import write_bytes
from ingestd.state import marker
from ingestd.state.chains import chains
from ingestd.state.runner import open_state
from ingestd.state.steps import CORE, latest

LATEST = latest(CORE)  # core's schema: the state directory's own chain


def _cursor_to_json(ctx: StepContext) -> None:
    """v1 kept `cursor.txt`; v2 keeps `cursor.json` (idempotent: a redo finds it done)."""
    old = ctx.root / "cursor.txt"
    if old.exists():
        write_bytes(ctx.root / "cursor.json", json.dumps({"cursor": old.read_text()}).encode())
        old.unlink()


class Fake(Connector):
    kind = "fake"
    state_steps = (Step(2, "cursor-json", "the cursor becomes JSON", _cursor_to_json),)


def sources(*names: str, kind: str = "fake"):
    return [SimpleNamespace(name=n, kind=kind) for n in names]


def used_state(tmp_path: Path) -> Path:
    """A state directory 0.1.0 has used (unmarked: version 1)."""
    state = tmp_path / "state"
    (state / "jobs").mkdir(parents=True)
    return state


def read(root: Path) -> dict:
    return json.loads((root / marker.FILE).read_text())


def test_a_connector_migrates_its_sources_own_directory(tmp_path):
    state = used_state(tmp_path)
    (state / "sources" / "a").mkdir(parents=True)
    (state / "sources" / "a" / "cursor.txt").write_text("c-41")
    opened = open_state(state, chains(state, sources("a", "b"), {"fake": Fake}), write=True)
    opened.close()
    a = state / "sources" / "a"
    assert json.loads((a / "cursor.json").read_text()) == {"cursor": "c-41"} and not (a / "cursor.txt").exists()
    assert read(a)["schema"] == 2 and read(a)["kind"] == "fake" and [h["step"] for h in read(a)["history"]] == ["cursor-json"]
    # a source with nothing yet is born at the latest version: marked, no step run
    b = state / "sources" / "b"
    assert sorted(p.name for p in b.iterdir()) == [marker.FILE] and read(b)["created"]["version"] == 2
    assert read(state)["schema"] == LATEST
    core = LATEST - 1  # lines for core's steps come first
    assert opened.done[0].startswith(f"state {state}: applied 2 schema-marker (")
    assert opened.done[core].startswith("source a (fake): applied 2 cursor-json (")
    assert opened.done[core + 1] == "source b (fake): new, marked at schema 2"


def test_a_connector_without_steps_leaves_its_directories_alone(tmp_path):
    state = used_state(tmp_path)
    open_state(state, chains(state, sources("x", kind="plain"), {"plain": Connector}), write=True).close()
    assert not (state / "sources" / "x").exists()


def test_a_source_whose_kind_changed_counts_from_version_1_of_the_new_kind(tmp_path):
    state = used_state(tmp_path)
    a = state / "sources" / "a"
    a.mkdir(parents=True)
    (a / marker.FILE).write_text(json.dumps({"schema": 7, "kind": "other"}))
    (a / "cursor.txt").write_text("c")
    open_state(state, chains(state, sources("a"), {"fake": Fake}), write=True).close()
    assert read(a)["schema"] == 2 and read(a)["kind"] == "fake" and (a / "cursor.json").exists()


def test_a_source_ahead_of_its_plugin_is_refused(tmp_path):
    state = used_state(tmp_path)
    (state / "sources" / "a").mkdir(parents=True)
    (state / "sources" / "a" / marker.FILE).write_text(json.dumps({"schema": 3, "kind": "fake"}))
    with pytest.raises(SchemaTooNew, match=r"source a \(fake\) is at schema 3, newer .* \(up to 2\)"):
        open_state(state, chains(state, sources("a"), {"fake": Fake}), write=True)
    assert not (state / marker.FILE).exists(), "core was migrated although the state was refused"


def test_read_only_use_refuses_a_pending_step_that_is_not_read_safe_and_writes_nothing(tmp_path):
    state = used_state(tmp_path)
    (state / "sources" / "a").mkdir(parents=True)
    (state / "sources" / "a" / "cursor.txt").write_text("c")
    with pytest.raises(MigrationPending, match=r"pending: .*2 cursor-json\).*ingestd migrate"):
        open_state(state, chains(state, sources("a"), {"fake": Fake}), write=False)
    assert not list(state.rglob(marker.FILE)) and (state / "sources" / "a" / "cursor.txt").exists()
    # a step that is read-safe does not keep a reader out
    open_state(state, chains(state, [], {}), write=True).close()  # core up to date

    class Gentle(Fake):
        state_steps = (Step(2, "cursor-json", "…", _cursor_to_json, read_safe=True),)

    open_state(state, chains(state, sources("a"), {"fake": Gentle}), write=False).close()
    assert not (state / "sources" / "a" / marker.FILE).exists()


def test_a_new_state_is_marked_at_the_latest_schema_by_a_writer_only(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    open_state(state, chains(state, [], {}), write=False).close()
    assert not (state / marker.FILE).exists()
    open_state(state, chains(state, [], {}), write=True).close()
    assert read(state)["schema"] == LATEST and read(state)["history"] == [] and read(state)["created"]["step"] == "created"


def test_a_failing_step_is_not_recorded_and_the_next_start_runs_it_again(tmp_path):
    state = used_state(tmp_path)
    (state / "sources" / "a").mkdir(parents=True)
    (state / "sources" / "a" / "cursor.txt").write_text("c")
    calls = []

    def flaky(ctx: StepContext) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        _cursor_to_json(ctx)

    class Flaky(Fake):
        state_steps = (Step(2, "cursor-json", "…", flaky),)

    with pytest.raises(OSError):
        open_state(state, chains(state, sources("a"), {"fake": Flaky}), write=True)
    assert not (state / "sources" / "a" / marker.FILE).exists()
    open_state(state, chains(state, sources("a"), {"fake": Flaky}), write=True).close()  # the lock was let go
    assert len(calls) == 2 and read(state / "sources" / "a")["schema"] == 2


def test_steps_must_be_numbered_from_2_in_order(tmp_path):
    class Gap(Fake):
        state_steps = (Step(3, "late", "…", _cursor_to_json),)

    with pytest.raises(IngestdError, match=r"connector 'fake': state_steps must be versions 2, 3, … in order, got \[3\]"):
        chains(tmp_path, sources("a"), {"fake": Gap})


def test_a_migration_due_while_another_process_uses_the_state_gives_up_with_state_busy(tmp_path, monkeypatch):
    """A daemon of the previous release still running holds the lock shared: migrating
    under it would change its files as it uses them."""
    from ingestd.errors import StateBusy
    from ingestd.state import runner
    from ingestd.state.lock import StateLock

    state = used_state(tmp_path)
    other = StateLock(state)  # flock: another open file is another holder, even in-process
    other.shared()
    monkeypatch.setattr(runner, "LOCK_WAIT", 0.3)
    try:
        with pytest.raises(StateBusy, match="another ingestd process .* is using it; stop it, then run `ingestd migrate`"):
            open_state(state, chains(state, [], {}), write=True)
        assert not (state / marker.FILE).exists()
    finally:
        other.release()
    open_state(state, chains(state, [], {}), write=True).close()
    assert read(state)["schema"] == LATEST
