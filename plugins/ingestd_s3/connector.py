"""The `s3` connector: glue between core's job contract and the sync.

Only this module is imported with the plugin; boto3 (through `client` and `sync`) is
imported when a job runs, so ingestd works, and reports what to install, without it.
"""

from __future__ import annotations

import os
import threading

from ingestd.errors import Code, ConfigError, ConnectorError
from ingestd.plugin import (
    Connector, Credential, Deleted, Failed, JobContext, Outcome, Registry, Requirement, Source, Staged,
)

from . import credentials as cred_types
from . import state
from .objects import Skip, Token
from .options import S3Options

SYNCED = ("ingested", "unchanged")


class S3Connector(Connector):
    kind = "s3"
    Options = S3Options
    requires = Requirement(("boto3",), "pip install 'ingestd[s3]'")
    description = "a bucket prefix on Amazon S3 or an S3-compatible store"

    def __init__(self, source: Source, credentials: Registry, state_dir):
        super().__init__(source, credentials, state_dir)
        self._lock = threading.Lock()
        self._client = None
        self._client_key: str | None = None
        self._salt = os.urandom(16)

    # -- a job ------------------------------------------------------------------------

    def stage(self, ctx: JobContext):
        from .sync import Sync

        yield from Sync(self._client_for_job(), self.options, ctx).events()

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        """Remember what is now durable in the store, and the refusals that hold until the
        object changes; failed items stay unrecorded so the next run tries them again."""
        synced, gone, refused = [], [], []
        for out in outcomes:
            event = out.event
            if isinstance(event, Staged) and out.outcome in SYNCED and isinstance(event.token, Token):
                synced.append((event.token, out.doc_id))
            elif isinstance(event, Deleted) and out.outcome in ("deleted", "unchanged"):
                gone.append(event.token)
            elif isinstance(event, Failed) and out.outcome == "skipped" and isinstance(event.token, Skip):
                refused.append(event.token)
        rows = state.record(ctx.source_state, self.options.bucket, synced, gone, refused)
        ctx.log.debug("s3 state recorded", rows=rows)

    # -- the client -------------------------------------------------------------------

    def _client_for_job(self):
        """The source's client, rebuilt when its credential changed since the last job."""
        from . import client as client_mod
        from .remote import translate

        cred = self._credential()
        key = client_mod.fingerprint(cred, self._salt)
        with self._lock:
            if self._client is not None and key == self._client_key:
                client_mod.remember_keys(self._client, self.source.name)
                return self._client
            try:
                fresh = client_mod.build(self.options, cred, self.source.name)
            except ConnectorError:
                raise
            except Exception as exc:
                err = translate(exc, f"building the S3 client for source {self.source.name!r}")
                if err is None:
                    raise
                raise err from None
            self._close_client()
            self._client, self._client_key = fresh, key
            return fresh

    def _credential(self) -> Credential | None:
        """Resolved at every job, so a rotated secret is picked up without a restart."""
        name = self.options.credentials
        if not name:
            return None
        try:
            cred = self.credentials.resolve(name)
        except ConfigError as exc:
            raise ConnectorError(Code.CONFIG, "; ".join(exc.lines)) from None
        problems = cred_types.problems(cred)
        if problems:
            raise ConnectorError(Code.CONFIG, problems[0])
        return cred

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client, self._client_key = None, None

    def close(self) -> None:
        with self._lock:
            self._close_client()

    # -- check-config -----------------------------------------------------------------

    def check(self) -> list[str]:
        return _prefix_warnings(self.source.name, self.options.prefix) + self._credential_problems()

    def _credential_problems(self) -> list[str]:
        where = f'sources "{self.source.name}": credentials'
        name = self.options.credentials
        if not name:
            return []
        try:
            cred = self.credentials.resolve(name)
        except ConfigError as exc:
            return list(exc.lines)
        problems = [f"{where}: {p}" for p in cred_types.problems(cred)]
        if not problems and cred.type in ("aws_profile", "aws_assume_role"):
            problems += [f"{where}: {p}" for p in _profile_problems(cred)]
        return problems


def _prefix_warnings(source: str, prefix: str) -> list[str]:
    """A prefix is a string match, not a folder: `reports` also takes `reports-old/…`.
    Only a warning (`check-config` still passes, jobs run): a partial name may be meant."""
    if not prefix or prefix.endswith("/"):
        return []
    return [f'sources "{source}": prefix: warning: "{prefix}" has no trailing "/", so it also takes sibling '
            f'keys that merely start with it, such as "{prefix}-old/…" or "{prefix}.txt"; write "{prefix}/" '
            "to sync that folder alone (keep it as it is if a partial name is meant)"]


def _profile_problems(cred: Credential) -> list[str]:
    """A named profile must exist in the AWS config files this process reads."""
    profile = cred.get("profile") if cred.type == "aws_profile" else cred.get("source_profile")
    if not profile:
        return []
    try:
        import boto3
    except ImportError:  # reported as the connector being unavailable
        return []

    if profile in boto3.session.Session().available_profiles:
        return []
    return [f'credential "{cred.name}": AWS profile {profile!r} is not defined in the AWS config files '
            f"(~/.aws/config, ~/.aws/credentials, or $AWS_CONFIG_FILE); create it with "
            f"`aws configure --profile {profile}`"]
