"""register_sinks: a wrong class, a bad kind or a kind taken quarantines that plugin only."""

from __future__ import annotations

import types

import pytest

from ingestd.plugin import Sink, hookimpl
from ingestd.plugin.manager import Plugins


def plugin(*classes) -> types.SimpleNamespace:
    @hookimpl
    def register_sinks(register):
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(register_sinks=register_sinks)


class Good(Sink):
    kind = "good"

    def deliver(self, changes):
        pass


class BadKind(Sink):
    kind = "Bad Kind!"


class Taken(Sink):
    kind = "webhook"


@pytest.mark.parametrize("cls, reason", [
    (object, "is not a Sink subclass"),
    (BadKind, "kind must be a short lower-case name"),
    (Taken, "sink kind 'webhook' is already registered"),
])
def test_a_mistake_quarantines_the_plugin_and_nothing_else(cls, reason):
    plugins = Plugins().load(extra={"good": plugin(Good), "mistaken": plugin(Good.__class__("Other", (Good,),
                                                                                       {"kind": "other"}), cls)})
    info = plugins.info["mistaken"]
    assert info.status == "quarantined" and reason in info.error and "register_sinks failed" in info.error
    assert "other" not in plugins.sinks  # registered before the mistake, withdrawn with the plugin
    assert plugins.sinks["good"] is Good and "webhook" in plugins.sinks
    assert set(plugins.sink_option_models()) >= {"good", "webhook", "mistaken"}  # its sinks: unavailable, not unknown
