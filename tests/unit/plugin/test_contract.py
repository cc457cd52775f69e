"""A connector class is checked once, when its plugin registers it: each MUST of the
contract, and a refused class leaves the plugin's other kinds working."""

import pytest

from ingestd.plugin import Connector, Requirement, ScheduleOptions, Step, Strict, WatchedConnector, WatchOptions, hookimpl
from ingestd.plugin.contract import problems
from ingestd.plugin.manager import Plugins, Unchecked


class Sched(ScheduleOptions):
    folder: str = "."


class Good(Connector):
    kind = "good"
    Options = Sched

    def stage(self, ctx):
        return iter(())


def variant(**attrs) -> type[Connector]:
    return type("Variant", (Good,), attrs)


def no_stage() -> type[Connector]:
    return type("NoStage", (Connector,), {"kind": "nostage", "Options": Sched})


class Plain(Strict):
    folder: str = "."


class Watch(WatchOptions):
    folder: str = "."


def watched(options) -> type[Connector]:
    return type("Watched", (WatchedConnector,), {"kind": "watched", "Options": options, "stage": Good.stage})


@pytest.mark.parametrize("cls, expected", [
    (Good, []),
    (variant(kind="Bad Kind"), ["kind must be a name"]),
    (variant(kind=None), ["kind must be a name"]),
    (variant(Options=None), ["has no Options"]),
    (variant(Options=dict), ["has no Options"]),
    (variant(Options=Plain), ["Options (Plain) must subclass ingestd.plugin.ScheduleOptions"]),
    (variant(Options=Plain, watched=True), ["needs the watched-connector contract"]),  # issue 25, item 2
    (watched(Plain), ["must subclass ingestd.plugin.WatchOptions"]),
    (watched(Watch), []),  # a watched connector is not scheduled
    (no_stage(), ["does not implement stage(self, ctx)"]),
    (variant(requires=("boto3",)), ["requires must be an ingestd.plugin.Requirement"]),
    (variant(state_steps=(Step(3, "x", "x", lambda ctx: None),)), ["state_steps must be versions 2, 3"]),
    (variant(state_steps=("not a step",)), ["state_steps must be a tuple of ingestd.plugin.Step"]),
    (variant(description=42), ["description must be a string"]),
])
def test_each_must_is_checked(cls, expected):
    found = problems(cls)
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found)), found


def test_a_refused_class_leaves_the_plugins_other_kinds_and_its_sources_load_unchecked():
    class Mixed:
        @hookimpl
        def register_connectors(self, register):
            register(no_stage())
            register(Good)

    plugins = Plugins().load(extra={"mixed": Mixed()})
    assert plugins.info["mixed"].status == "loaded" and plugins.info["mixed"].kinds == ["good"]
    assert "does not implement stage" in plugins.info["mixed"].refused["nostage"]
    assert plugins.connectors["good"] is Good and "nostage" not in plugins.connectors
    assert plugins.option_models()["nostage"] is Unchecked
    assert "does not implement stage" in plugins.unavailable("nostage")
    assert plugins.unavailable("good") is None
    assert plugins.unavailable("nothing") == "no installed plugin provides connector 'nothing'"
    assert [(p.plugin, p.kind) for p in plugins.problems()] == [("mixed", "nostage")]


def test_a_plugin_quarantined_after_registering_takes_its_kinds_with_it():
    class Half:
        @hookimpl
        def register_connectors(self, register):
            register(Good)
            raise RuntimeError("half done")

    plugins = Plugins().load(extra={"half": Half()})
    assert "good" not in plugins.connectors
    assert plugins.unavailable("good") == "plugin 'half' is quarantined: register_connectors failed: RuntimeError: half done"
    assert [(p.plugin, p.kind) for p in plugins.problems()] == [("half", "good")]


def test_a_dependency_that_raises_on_import_is_reported_not_raised(tmp_path, monkeypatch):
    (tmp_path / "raising_dep.py").write_text("raise ValueError('bad build')\n")
    (tmp_path / "exiting_dep.py").write_text("import sys\nsys.exit(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    req = Requirement(("raising_dep", "exiting_dep", "json", "absent_dep_xyz"), "pip install fixed")
    assert req.missing() == ["raising_dep", "exiting_dep", "absent_dep_xyz"]
    cls = variant(requires=req)
    assert cls.unavailable_reason() == ("needs raising_dep (installed but broken: ValueError: bad build), "
                                        "exiting_dep (installed but broken: SystemExit: 1), absent_dep_xyz: "
                                        "pip install fixed")
