"""Where a watcher reads jobs another process runs: the daemon's API when one answers (its
memory: fresh progress on every request), else the manifest files on disk (rewritten about
once a second while a job's progress moves). Both give `Manifest`s, so one display serves."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from ingestd._lib.daemon_file import live_daemon
from ingestd.config import Config
from ingestd.errors import IngestdError, NotFoundError
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.locks import held_by_someone
from ingestd.jobs.manifest import Manifest

ACTIVE = ("running", "queued")


class DiskFeed:
    interval = 0.5  # the files move about once a second

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.where = f"manifest files in {state_dir / 'jobs'}"

    def job(self, job_id: str) -> Manifest:
        return JobStore(self.state_dir).get(job_id)  # a fresh store: never an older cached copy

    def active(self, source: str | None) -> list[Manifest]:
        store = JobStore(self.state_dir)
        store.load_all()
        listed = [m for status in ACTIVE for m in store.list(source=source, status=status, limit=500)]
        daemon = live_daemon(self.state_dir) if listed else None  # asked once for the page, not per job
        return [m for m in listed if not self._unattended(m, daemon)]

    def abandoned(self, m: Manifest) -> bool:
        """Still marked queued or running, but no process can be running it: no daemon
        lives on this state directory and nobody holds the source's lock (a process that
        dies mid-job cannot mark its job; the next job of that source will, as
        `interrupted`). Without this a watcher of such a job would wait forever."""
        return m.status in ACTIVE and self._unattended(m, live_daemon(self.state_dir))

    def _unattended(self, m: Manifest, daemon: dict | None) -> bool:
        return daemon is None and not held_by_someone(self.state_dir, m.source)


class ApiFeed:
    interval = 0.25

    def __init__(self, host: str, port: int, token: str | None):
        self.host, self.port, self._token = host, port, token
        self.where = f"the daemon at {host}:{port}"

    def job(self, job_id: str) -> Manifest:
        status, body = self._get(f"/ingest/{job_id}")
        if status == 404:
            raise NotFoundError(f"no job {job_id}")
        return _manifest(body)

    def active(self, source: str | None) -> list[Manifest]:
        out = []
        for status in ACTIVE:
            query = urlencode({"status": status, "limit": 500, **({"source": source} if source else {})})
            _, body = self._get(f"/jobs?{query}")
            out += [_manifest(row) for row in body["jobs"]]
        return out

    def abandoned(self, m: Manifest) -> bool:
        return False  # the daemon answering recovers what its own earlier life left running

    def answers(self) -> bool:
        """Whether the daemon serves jobs to this caller (the token included)."""
        try:
            status, _ = self._get("/jobs?limit=1")
        except IngestdError:
            return False
        return status == 200

    def _get(self, path: str) -> tuple[int, dict]:
        import http.client  # only when following: not on every command's start-up

        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = json.loads(response.read() or b"{}")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise IngestdError(f"{self.where} stopped answering ({exc.__class__.__name__}); "
                               "`ingestd status JOB_ID` reads the job's file") from None
        finally:
            conn.close()
        if response.status not in (200, 404):
            raise IngestdError(f"{self.where} answered GET {path.partition('?')[0]} with HTTP {response.status}")
        return response.status, body


def _manifest(body: dict) -> Manifest:
    """An API job as a manifest (the API leaves out only where the items file is)."""
    return Manifest.model_validate({**body, "items_file": ""})


def feed(cfg: Config) -> ApiFeed | DiskFeed:
    """The daemon's API if a daemon runs on this state dir (its `daemon.json` names a live
    pid and the address it listens on, port 0 resolved) and answers with the configured
    token (readable by this user); else the files."""
    api = _api(cfg)
    return api if api is not None and api.answers() else DiskFeed(cfg.daemon.state_dir)


def _api(cfg: Config) -> ApiFeed | None:
    address = _running_daemon(cfg.daemon.state_dir)
    if address is None:
        return None
    token = None
    if cfg.http.token_file is not None:
        from ingestd._lib.token_file import read_token

        try:
            token = read_token(cfg.http.token_file)
        except (ValueError, PermissionError):
            return None  # not this user's to read: the files still tell
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return ApiFeed({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), int(port), token)


def _running_daemon(state_dir: Path) -> str | None:
    """The HTTP address of the daemon that runs on `state_dir`, if one does."""
    address = (live_daemon(state_dir) or {}).get("http")
    return address if isinstance(address, str) and ":" in address else None
