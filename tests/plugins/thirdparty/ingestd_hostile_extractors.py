"""Extractors that misbehave on purpose, installed like a third-party plugin, so the
tests can prove a worker's hang, balloon, crash or chatter costs one file a typed error
and nothing else.

`hang` spins for ever; `balloon` allocates until the address-space limit stops it;
`abort` kills its own process (a parser's segfault); `chatty` prints to stdout and
stderr, then succeeds; `slow` sleeps for the seconds written in the file, then succeeds.
Each claims a made-up MIME type, `application/x-ingestd-test-<name>`.

`versioned` takes CSV over from the built-in (a higher priority), in the version named
by $INGESTD_TEST_CSV_VERSION, and sleeps $INGESTD_TEST_CSV_SLEEP seconds per file: a new
release of an extractor, as the re-extraction tests need one.
"""

import os
import sys
import time

from ingestd.plugin import Extracted, Extractor, hookimpl


class _Base(Extractor):
    version = "1"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.mime_types = (f"application/x-ingestd-test-{cls.name}",)


class Hang(_Base):
    name = "hang"

    def extract(self, path, limits):
        while True:
            pass


class Balloon(_Base):
    name = "balloon"

    def extract(self, path, limits):
        held = []
        while True:
            held.append(bytearray(64 << 20))


class Abort(_Base):
    name = "abort"

    def extract(self, path, limits):
        os.abort()


class Chatty(_Base):
    name = "chatty"

    def extract(self, path, limits):
        print("noise on stdout {not json")
        os.write(1, b"more noise, straight to fd 1\n")
        print("noise on stderr", file=sys.stderr)
        return Extracted("# Chatty\n\n" + path.read_text() + "\n")


class Slow(_Base):
    name = "slow"

    def extract(self, path, limits):
        time.sleep(float(path.read_text().strip() or 0))
        return Extracted("slept\n")


class Versioned(Extractor):
    name = "versioned"
    version = os.environ.get("INGESTD_TEST_CSV_VERSION", "1")
    mime_types = ("text/csv",)
    priority = 10

    def extract(self, path, limits):
        time.sleep(float(os.environ.get("INGESTD_TEST_CSV_SLEEP", "0")))
        return Extracted(f"version {self.version}\n\n" + path.read_text() + "\n")


@hookimpl
def register_extractors(register):
    for cls in (Hang, Balloon, Abort, Chatty, Slow, Versioned):
        register(cls)
