"""The `local` connector: a drop folder on local disk (or a mount, with `poll = true`)."""

from ingestd.plugin import hookimpl

from .connector import LocalConnector


@hookimpl
def register_connectors(register):
    register(LocalConnector)
