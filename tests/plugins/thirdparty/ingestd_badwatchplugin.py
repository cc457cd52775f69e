"""A third-party plugin with a watched connector whose options lack what the watcher reads
(issue 25, item 2): it must be refused when the plugin loads, with the reason, and never
take `ingestd run` down."""

from ingestd.plugin import ConfigPath, Connector, Strict, hookimpl


class BareOptions(Strict):
    folder: ConfigPath


class BareWatched(Connector):
    kind = "bare-watched"
    Options = BareOptions
    watched = True  # without WatchedConnector and WatchOptions

    def stage(self, ctx):
        return iter(())


@hookimpl
def register_connectors(register):
    register(BareWatched)
