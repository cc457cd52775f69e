"""Make `tests/upgrade/fixtures/<tag>.tar.gz`: a state directory written by a released
ingestd, with what that release said about it.

    .venv/bin/python -m tests.upgrade.make_fixture            # v0.1.0, ~2 minutes
    .venv/bin/python -m tests.upgrade.make_fixture --tag v0.2.0 --venv /tmp/rel-venv --keep /tmp/fx

The tag is extracted with `git archive` and pip-installed (with its s3 and sharepoint
extras) into a venv of its own; moto and the fake Graph run in this process, from this
checkout's tests. The release is then driven only through its daemon, its HTTP API and its
CLI (`story.py`), and its answers are recorded (`recorded/answers.json`) for the tests to
compare with what the current code answers. The remotes' final contents are saved beside
(`recorded/s3.json`, `recorded/graph.json`) so the tests rebuild them exactly.

The archive holds the user's side of an installation, paths relative to its root:
`ingestd.toml` (relative paths only), `credentials.json`, `graph-ca.pem` (replaced at test
time: the fake's CA is made per run), `drop/move/`, `drop/keep/` (the kept originals) and
`state/`; plus `recorded/`. A fixture is made once per release and then never changes.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tests.fakegraph import FakeGraph, make_ca
from tests.support.helpers import ROOT

from . import archive
from .kit import all_jobs
from .release import Release, clean_env
from .remotes import describe_graph, describe_s3
from .story import Story

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def record_api(daemon, state: Path) -> dict:
    """What the running release answers about every job and document it holds."""
    jobs = all_jobs(daemon)
    docs = sorted(doc_ids(state))
    return {
        "jobs_list": jobs,
        "jobs": {j["job_id"]: _get(daemon, f"/ingest/{j['job_id']}") for j in jobs},
        "documents": {d: _get(daemon, f"/documents/{d}") for d in docs},
    }


def record_cli(release: Release, config: Path, env: dict, job_ids: list[str], state: Path) -> dict:
    """What the release's CLI says about the same, with no daemon running."""
    _, listed = release.cli_json("jobs", "--limit", "500", config=config, env=env)
    return {
        "jobs_list": listed,
        "jobs": {j: release.cli_json("status", j, config=config, env=env)[1] for j in job_ids},
        "documents": {d: release.cli_json("document", d, config=config, env=env)[1] for d in sorted(doc_ids(state))},
    }


def record_items(state: Path, manifests: list[dict]) -> dict:
    """Each job's items file (the README's `jobs/<job_id>.items.jsonl`), line by line."""
    out = {}
    for m in manifests:
        path = state / "jobs" / m["items_file"]
        out[m["job_id"]] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else None
    return out


def doc_ids(state: Path) -> set[str]:
    """Every document a job reported (each document's first version is an items line)."""
    ids = set()
    for path in (state / "jobs").glob("*.items.jsonl"):
        ids |= {json.loads(line)["doc_id"] for line in path.read_text().splitlines()}
    return ids - {None}


def _get(daemon, path: str) -> dict:
    status, body = daemon.get(path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body}")
    return body


def make(tag: str, out: Path, work: Path, venv: Path | None) -> dict:
    from tests.plugins.s3.kit import MotoS3

    release = Release.install(tag, work / "release", venv)
    root = work / "fixture"
    root.mkdir()
    env = clean_env(work)
    moto = MotoS3()
    fake = FakeGraph(make_ca(work), work).start()
    try:
        story = Story(release, root, moto, fake, env)
        answers: dict = {}
        story.run(lambda daemon: answers.update(api=record_api(daemon, story.state)))
        job_ids = [j["job_id"] for j in answers["api"]["jobs_list"]]
        answers["cli"] = record_cli(release, story.config, env, job_ids, story.state)
        answers["items"] = record_items(story.state, answers["cli"]["jobs_list"])
        recorded = root / "recorded"
        recorded.mkdir()
        about = {
            "release": release.version(), "tag": tag, "commit": _git("rev-parse", f"{tag}^{{commit}}"),
            "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "made_by": "python -m tests.upgrade.make_fixture", "python": platform.python_version(),
            "packages": release.packages(),
            "root": str(root), "origins": {"graph": fake.base_url, "s3": moto.url},
            "checks": story.checks,
        }
        _write(recorded / "about.json", about)
        _write(recorded / "answers.json", answers)
        _write(recorded / "s3.json", describe_s3(moto.s3, ["docs", "late"]))
        _write(recorded / "graph.json", describe_graph(fake))
    finally:
        fake.stop()
        moto.stop()
    archive.pack(root, out)
    return about


def _write(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", default="v0.1.0", help="the release to install and drive (a git tag)")
    p.add_argument("--out", type=Path, help="the archive to write (default: tests/upgrade/fixtures/TAG.tar.gz)")
    p.add_argument("--venv", type=Path, help="reuse (or create) the release's venv here")
    p.add_argument("--keep", type=Path, help="work in this (new) folder and leave it, with the daemon logs")
    args = p.parse_args(argv)
    out = args.out or FIXTURES / f"{args.tag}.tar.gz"
    if args.keep:
        args.keep.mkdir(parents=True)
        about = make(args.tag, out, args.keep, args.venv)
    else:
        with tempfile.TemporaryDirectory(prefix=f"ingestd-{args.tag}-fixture-") as work:
            about = make(args.tag, out, Path(work), args.venv)
    print(f"{out}: {out.stat().st_size} bytes, made by {about['release']} ({about['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
