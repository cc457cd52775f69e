"""A third-party plugin, installed the way pip would (a dist-info with an entry point),
used by the tests to prove plugins work without touching core.

Connector `fixture`: a scheduled source that ingests every file in `folder`, and reports
as deleted every name listed in the file `gone` (one per line). With `hold_while` set, a
job waits while that path exists (to make runs overlap on purpose).
With `credential_expires_in_days`, it reports a credential expiring then (a warning
inside 30 days), the way a certificate-based connector would. With `warn` set, `check()`
reports that text as a warning. With `pace`, it stages one file every `pace` seconds (a slow
source: a job that stays running while its counters move).
Hooks `document_stored` and `document_deleted`: append a line per call to
$INGESTD_TEST_HOOK_LOG.
"""

import os
import time

from ingestd.plugin import ConfigPath, Connector, CredentialStatus, Deleted, ScheduleOptions, Staged, hookimpl


class FixtureOptions(ScheduleOptions):
    folder: ConfigPath
    gone: ConfigPath | None = None
    hold_while: ConfigPath | None = None
    credential_expires_in_days: float | None = None
    warn: str | None = None
    pace: float = 0.0


class FixtureConnector(Connector):
    kind = "fixture"
    Options = FixtureOptions
    description = "test connector: every file in a folder"

    def check(self):
        warn = self.options.warn
        return [f'sources "{self.source.name}": warn: warning: {warn}'] if warn else []

    def stage(self, ctx):
        hold = self.options.hold_while
        deadline = time.monotonic() + 30
        while hold is not None and hold.exists() and time.monotonic() < deadline and not ctx.stop.is_set():
            time.sleep(0.02)
        for path in sorted(self.options.folder.iterdir()):
            if self.options.pace:
                ctx.stop.wait(self.options.pace)  # the workload: a source that lists slowly
            yield Staged(origin_uri=f"fixture://{path.name}", path=path, name=path.name)
        gone = self.options.gone
        for name in gone.read_text().split() if gone is not None and gone.exists() else ():
            yield Deleted(origin_uri=f"fixture://{name}")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        days = self.options.credential_expires_in_days
        self._expires = time.time() + days * 86400 if days is not None else None

    def credential_status(self):
        if self._expires is None:
            return CredentialStatus()
        days = (self._expires - time.time()) / 86400
        warnings = (f"certificate expires in {days:.0f} days",) if days < 30 else ()
        return CredentialStatus(warnings=warnings, expires_at=self._expires)


@hookimpl
def register_connectors(register):
    register(FixtureConnector)


@hookimpl
def document_stored(document, job, cursor):
    _log(f"stored {job.job_id} {document.doc_id} {document.blob.sha256} {cursor}")


@hookimpl
def document_deleted(document, job, cursor):
    _log(f"deleted {job.job_id} {document.doc_id} {document.sha256} {cursor}")


def _log(line: str) -> None:
    log = os.environ.get("INGESTD_TEST_HOOK_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(line + "\n")
