"""A third-party sink, installed by entry point: appends each batch to a file (one JSON
line per change). What a Kafka or NATS sink package looks like, minus the broker."""

import json

from ingestd.plugin import DeliveryError, Sink, Strict, hookimpl


class FileOptions(Strict):
    path: str
    refuse: bool = False


class FileSink(Sink):
    kind = "file"
    Options = FileOptions

    def deliver(self, changes):
        if self.options.refuse:
            raise DeliveryError("rejected", "refusing on purpose")
        with open(self.options.path, "a") as out:
            for change in changes:
                out.write(json.dumps(change) + "\n")


@hookimpl
def register_sinks(register):
    register(FileSink)
