"""Talking to a running ingestd as a user does (HTTP API), shared by the fixture generator
and the upgrade tests: trigger a job, list jobs, wait for a source to go quiet."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from tests.support.helpers import wait_for

TERMINAL = ("succeeded", "partial", "failed")


def mark() -> str:
    """A string that sorts before the id of any job created from now on (job ids start
    with their creation time, `YYYYmmddTHHMMSSffffffZ-…`)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def post(daemon, path: str, body: dict) -> tuple[int, dict]:
    return daemon.post(path, body)


def trigger(daemon, source: str, timeout: float = 60.0) -> str:
    """POST /ingest for `source` (waiting out a job the daemon started on its own, 409);
    the new job's id."""

    def attempt():
        status, body = post(daemon, "/ingest", {"source": source})
        if status not in (202, 409) or (status == 409 and body.get("error") != "busy"):
            raise AssertionError(f"POST /ingest {source}: {status} {body}")
        return body["job_id"] if status == 202 else None

    return wait_for(attempt, timeout=timeout, interval=0.1, message=f"{source} to take a job")


def all_jobs(daemon, **query) -> list[dict]:
    """Every job `GET /jobs` lists (newest first), following `links.next`."""
    out, path = [], "/jobs?" + urlencode({**query, "limit": 500})
    while path:
        status, body = daemon.get(path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body}")
        out += body["jobs"]
        path = body["links"]["next"]
    return out


def wait_jobs(daemon, after: str, expect: dict[str, int], timeout: float = 90.0) -> list[dict]:
    """Wait until each source in `expect` has at least that many jobs newer than `after`,
    and every job newer than `after` has finished; those jobs, oldest first."""

    def done():
        jobs = [j for j in all_jobs(daemon) if j["job_id"] > after]
        counts = {s: sum(1 for j in jobs if j["source"] == s) for s in expect}
        finished = all(j["status"] in TERMINAL for j in jobs)
        return sorted(jobs, key=lambda j: j["job_id"]) if finished and all(
            counts[s] >= n for s, n in expect.items()) else None

    return wait_for(done, timeout=timeout, interval=0.1, message=f"jobs {expect} after {after}")


def wait_schedule_fired(daemon, started: float, timeout: float = 60.0) -> None:
    """Wait until every scheduled source's first run (a second after start) has been taken
    or skipped (its next run is then far off), and no job is queued or running."""

    def quiet():
        status, body = daemon.get("/sources")
        if status != 200:
            return False
        pending = [s for s in body["sources"] if s["next_run_at"] is not None
                   and datetime.fromisoformat(s["next_run_at"].replace("Z", "+00:00")).timestamp() < started + 3600]
        active = [j for j in all_jobs(daemon) if j["status"] not in TERMINAL]
        return not pending and not active

    wait_for(quiet, timeout=timeout, interval=0.1, message="the start-up runs to finish")
