"""The `sharepoint` connector: SharePoint Online document libraries (of team sites,
Teams channels' sites and OneDrive personal sites), kept in sync through Microsoft
Graph's drive delta.

The class holds what outlives a job (the HTTP session, the token cache, the job's run
until `finish`); `run.Run` does the work of one job, a `sync.Sync` per library. office365,
msal and requests are imported only when a job runs, so the options validate without
them. The source's state directory is laid out by `layout` (migrated by `state_steps`).
"""

from __future__ import annotations

import threading
from datetime import datetime

from ingestd.errors import Code, ConfigError, ConnectorError
from ingestd.plugin import Connector, CredentialStatus, JobContext, Outcome, Requirement
from ingestd.plugin.kit.throttle import Stopped, gate

from . import credential as creds
from . import layout, trust
from .options import SharePointOptions


class SharePointConnector(Connector):
    kind = "sharepoint"
    Options = SharePointOptions
    requires = Requirement(("office365", "msal"), "pip install 'ingestd[sharepoint]'")
    description = "SharePoint Online document libraries, synced through Microsoft Graph delta"
    state_steps = layout.STEPS

    def __init__(self, source, credentials, state_dir):
        super().__init__(source, credentials, state_dir)
        self._lock = threading.Lock()
        self._session = None
        self._tokens = None
        self._runs: dict[str, object] = {}

    # -- check-config -----------------------------------------------------------------

    def check(self) -> list[str]:
        where = f'sources "{self.source.name}"'
        problems = []
        try:
            cred = self.credentials.resolve(self.options.credentials)
        except ConfigError:
            cred = None  # core's check has already reported the missing credential
        if cred is not None:
            problems += [f"{where}: credentials: {problem}" for problem in creds.problems(cred)]
        if self.options.ca_bundle is not None:
            problem = trust.extra_problem(self.options.ca_bundle)
            if problem:
                problems.append(f"{where}: ca_bundle: {problem}")
        return problems

    def credential_expiry(self) -> datetime | None:
        """When this source's credential stops working, where that is known (a
        certificate's notAfter, UTC); None for a client secret or an unusable credential.
        For core to show on `/sources` and export as a metric; reads no network."""
        try:
            cred = self.credentials.resolve(self.options.credentials)
        except ConfigError:
            return None
        return creds.expiry(cred)

    def credential_status(self) -> CredentialStatus:
        """The contract's view for `/sources` and the metrics: the expiry warning (without
        the `credential 'x':` prefix) and the certificate's notAfter."""
        try:
            cred = self.credentials.resolve(self.options.credentials)
        except ConfigError:
            return CredentialStatus()
        expiry = creds.expiry(cred)
        return CredentialStatus(warnings=tuple(p.text for p in creds.problems(cred) if not p.fatal),
                                expires_at=expiry.timestamp() if expiry else None)

    # -- one job ----------------------------------------------------------------------

    def stage(self, ctx: JobContext):
        try:
            yield from self._begin(ctx).events()
        except Stopped:  # the daemon is stopping: core records the job as interrupted
            return

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        with self._lock:
            run = self._runs.pop(ctx.job_id, None)
        if run is None:
            return
        try:
            run.finish(outcomes, status)
        finally:
            run.close()
            run.done.set()

    def close(self) -> None:
        with self._lock:
            runs, self._runs = list(self._runs.values()), {}
            session, self._session = self._session, None
            tokens, self._tokens = self._tokens, None
        for run in runs:
            run.close()
        if tokens is not None:
            tokens.close()
        if session is not None:
            session.close()

    def _begin(self, ctx: JobContext):
        """Credentials, trust, tokens, the libraries and their states, for one job."""
        from .http import Http
        from .libraries import Index
        from .run import Run

        opts = self.options
        cred = self._credential(ctx)
        trust_path = trust.trust_file(opts.ca_bundle, ctx.source_state)
        tokens = self._token_source(cred, trust_path)
        tokens.token(ctx.stop)  # authentication problems surface first, before any Graph call
        http = Http(self._http_session(), tokens, gate(f"graph:{opts.authority_url}/{tokens.tenant_id}"),
                    trust=trust_path, timeout=(opts.connect_timeout, opts.timeout), stop=ctx.stop, log=ctx.log)
        self._settle_previous_runs()
        layout.ensure(ctx.source_state)
        index = Index(ctx.source_state)
        try:
            libraries = index.libraries(opts, http)
        except BaseException:
            index.close()
            raise
        run = Run(opts, ctx, http, index, libraries)
        with self._lock:
            self._runs[ctx.job_id] = run
        return run

    def _credential(self, ctx: JobContext):
        try:
            cred = self.credentials.resolve(self.options.credentials)
        except ConfigError as exc:
            raise ConnectorError(Code.CONFIG, "; ".join(exc.lines)) from None
        for problem in creds.problems(cred):
            if problem.fatal:
                raise ConnectorError(Code.AUTH, str(problem))
            ctx.log.warning("sharepoint credential", credential=cred.name, problem=problem.text)
        return cred

    def _token_source(self, cred, trust_path: str):
        from .auth import TokenSource
        from .http import USER_AGENT

        opts = self.options
        with self._lock:
            tokens = self._tokens
            if tokens is None or tokens.fingerprint != creds.fingerprint(cred):
                if tokens is not None:
                    tokens.close()
                tokens = self._tokens = TokenSource(
                    cred, authority_url=opts.authority_url, graph_url=opts.graph_url, trust=trust_path,
                    timeout=(opts.connect_timeout, opts.timeout), user_agent=USER_AGENT,
                )
            tokens.retarget(trust_path)
            return tokens

    def _http_session(self):
        """One session per source, its pool as large as the downloads running at once
        (plus room for the Graph calls beside them), so no connection is thrown away."""
        import requests
        from requests.adapters import HTTPAdapter

        with self._lock:
            if self._session is None:
                self._session = requests.Session()
                self._session.mount("https://", HTTPAdapter(pool_maxsize=self.options.concurrency + 2))
            return self._session

    def _settle_previous_runs(self) -> None:
        """Core calls `finish` before it releases the source lock, so by the time a new
        job of this source starts, a previous run still listed never committed (it gets
        no `finish`): drop its scratch."""
        with self._lock:
            previous, self._runs = list(self._runs.values()), {}
        for run in previous:
            run.close()
