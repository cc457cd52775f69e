"""The `webhook` sink: POSTs the change feed, a signed batch at a time, to an HTTP receiver."""

from ingestd.plugin import hookimpl

from .sink import WebhookSink


@hookimpl
def register_sinks(register):
    register(WebhookSink)
