"""`ingestd ingest` end to end, as a process, on real files."""

import hashlib
import json
import os
from pathlib import Path

from tests.support.helpers import manifests, run_cli

HOSTILE = ["line\nbreak.txt", os.fsdecode(b"latin1-\xe9.txt"), "\u202eevil.txt", "ｆｕｌｌ.txt", "sp ace & amp.txt"]


def drop(inbox: Path, rel: str, data: bytes) -> Path:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ingest(env, *extra):
    result = run_cli("ingest", "inbox", "--json", "--config", env.config, *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def blob(env, sha):
    return env.state / "blobs" / "sha256" / sha[:2] / sha


def test_mixed_folder_is_ingested_once_with_provenance(env):
    files = {
        "a.txt": b"hello\n",
        "nested/deeper/b.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" + os.urandom(100),
        "dup-of-a.txt": b"hello\n",
        **{f"hostile/{name}": name.encode("utf-8", "surrogateescape") for name in HOSTILE},
    }
    for rel, data in files.items():
        drop(env.inbox, rel, data)
    drop(env.inbox, ".hidden", b"ignored")
    drop(env.inbox, "partial.tmp", b"ignored")
    drop(env.inbox, "empty.bin", b"")
    (env.inbox / "passwd-link").symlink_to("/etc/passwd")

    result, manifest = ingest(env)
    assert result.returncode == 0, result.stderr
    assert manifest["status"] == "succeeded"
    c = manifest["counters"]
    assert (c["ingested"], c["skipped"], c["failed"], c["unchanged"]) == (len(files), 2, 0, 0)
    assert c["bytes"] == sum(len(d) for d in files.values())
    assert {e["code"] for e in manifest["errors"]} == {"empty", "symlink"}

    items = [json.loads(line) for line in (env.state / "jobs" / manifest["items_file"]).read_text().splitlines()]
    stored = [i for i in items if i["outcome"] == "ingested"]
    assert len(stored) == len(files)
    for item in stored:
        assert blob(env, item["sha256"]).read_bytes() and hashlib.sha256(blob(env, item["sha256"]).read_bytes()).hexdigest() == item["sha256"]
    by_uri = {i["origin_uri"]: i for i in stored}
    pdf = by_uri[(env.inbox / "nested/deeper/b.pdf").as_uri()]
    assert pdf["mime"] == "application/pdf"
    # identical content from two origins: two documents, one blob
    a, dup = by_uri[(env.inbox / "a.txt").as_uri()], by_uri[(env.inbox / "dup-of-a.txt").as_uri()]
    assert a["sha256"] == dup["sha256"] and a["doc_id"] != dup["doc_id"]

    # originals moved out only after the commit; ignored ones left alone; /etc/passwd untouched
    left = sorted(p.name for p in env.inbox.rglob("*") if p.is_file() or p.is_symlink())
    assert left == [".hidden", "partial.tmp"]
    processed = env.state / "processed" / "inbox" / manifest["job_id"]
    assert (processed / "nested" / "deeper" / "b.pdf").read_bytes() == files["nested/deeper/b.pdf"]
    assert len([p for p in (processed / "hostile").iterdir()]) == len(HOSTILE)
    failed = env.state / "failed" / "inbox" / manifest["job_id"]
    assert json.loads((failed / "passwd-link.error.json").read_text())["code"] == "symlink"
    assert os.path.exists("/etc/passwd") and (failed / "passwd-link").is_symlink()

    # the document record carries provenance
    doc = run_cli("document", pdf["doc_id"], "--json", "--config", env.config)
    record = json.loads(doc.stdout)
    assert record["origin_uri"] == pdf["origin_uri"] and record["job_id"] == manifest["job_id"]
    assert record["size"] == len(files["nested/deeper/b.pdf"]) and record["source"] == "inbox"
    assert record["source_modified_at"].endswith("Z") and record["versions"] == []


def test_same_origin_new_content_makes_a_version_same_content_is_unchanged(env):
    env.write(after="keep")
    drop(env.inbox, "report.txt", b"first\n")
    _, first = ingest(env)
    _, again = ingest(env)
    # after = keep: a file untouched since a job took it is not even read again, but it is
    # there, so the counters say so (issue 15, item 10)
    c = again["counters"]
    assert (c["discovered"], c["unchanged"], c["ingested"], c["bytes"]) == (1, 1, 0, 0), c
    drop(env.inbox, "report.txt", b"second\n")
    _, third = ingest(env)
    assert third["counters"]["ingested"] == 1
    item = json.loads((env.state / "jobs" / third["items_file"]).read_text().splitlines()[0])
    record = json.loads(run_cli("document", item["doc_id"], "--json", "--config", env.config).stdout)
    assert record["sha256"] == hashlib.sha256(b"second\n").hexdigest()
    assert [v["sha256"] for v in record["versions"]] == [hashlib.sha256(b"first\n").hexdigest()]
    assert record["versions"][0]["job_id"] == first["job_id"]
    assert (env.inbox / "report.txt").exists()  # after = keep


def test_after_delete_removes_originals(env):
    env.write(after="delete")
    drop(env.inbox, "x/y.txt", b"data")
    result, manifest = ingest(env)
    assert result.returncode == 0 and manifest["counters"]["ingested"] == 1
    assert not (env.inbox / "x" / "y.txt").exists()
    assert not (env.state / "processed").exists()


def test_partial_job_exits_1_and_keeps_the_failure_beside_the_file(env):
    env.write(max_file_size=10)
    drop(env.inbox, "small.txt", b"ok")
    drop(env.inbox, "big.txt", b"x" * 100)
    result, manifest = ingest(env)
    assert result.returncode == 1
    assert manifest["status"] == "partial"
    assert manifest["counters"]["failed"] == 1 and manifest["errors"][0]["code"] == "too_large"
    failed = env.state / "failed" / "inbox" / manifest["job_id"]
    assert (failed / "big.txt").exists()
    assert json.loads((failed / "big.txt.error.json").read_text())["code"] == "too_large"


def test_missing_drop_folder_is_refused_as_check_config_refuses_it(env):
    """The same check as `check-config` and `run`: exit 78, the file and the fix named, no job."""
    env.inbox.rmdir()
    result, manifest = ingest(env)
    assert result.returncode == 78 and manifest is None
    assert result.stderr.splitlines()[-1] == (f'{env.config}: sources "inbox": path: {env.inbox} is not a '
                                              "directory (create it)")
    assert not (env.state / "jobs").exists() or not list((env.state / "jobs").iterdir())


def test_status_jobs_and_usage_errors(env):
    drop(env.inbox, "a.txt", b"a")
    _, manifest = ingest(env)
    status = run_cli("status", manifest["job_id"], "--json", "--config", env.config)
    assert status.returncode == 0 and json.loads(status.stdout)["job_id"] == manifest["job_id"]
    human = run_cli("status", manifest["job_id"], "--config", env.config)
    assert f"job {manifest['job_id']}" in human.stdout and "succeeded" in human.stdout
    listing = json.loads(run_cli("jobs", "--json", "--config", env.config).stdout)
    assert [m["job_id"] for m in listing] == [manifest["job_id"]]
    assert run_cli("status", "../../etc/passwd", "--config", env.config).returncode == 2
    assert run_cli("status", "abcdefgh12345678", "--config", env.config).returncode == 1
    unknown = run_cli("ingest", "nope", "--config", env.config)
    assert unknown.returncode == 2 and "unknown source 'nope'" in unknown.stderr
    assert run_cli("frobnicate").returncode == 2


def test_logs_are_json_lines_carrying_job_and_source(env):
    drop(env.inbox, "a.txt", b"a")
    result = run_cli("ingest", "inbox", "--config", env.config)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    events = {line["event"] for line in lines}
    assert {"job started", "document stored", "job finished"} <= events
    for line in lines:
        if line["event"] in ("job started", "document stored", "job finished"):
            assert line["job_id"] and line["source"] == "inbox" and line["timestamp"].endswith("Z")


def test_every_manifest_on_disk_parses(env):
    drop(env.inbox, "a.txt", b"a")
    ingest(env)
    ingest(env)
    assert len(manifests(env.state)) == 2
