"""`ingestd verify` finds every kind of damage in the store, `--repair` takes bad blobs out
of service and marks what they belong to, and storing the same bytes again mends it. A
catalogue that is not a database stops every command with one line and exit 65."""

import hashlib
import json
import sqlite3

from tests.support.helpers import ROOT, run_cli


def ingest(env, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (env.inbox / name).write_bytes(data)
    result = run_cli("ingest", "inbox", "--json", "--config", env.config)
    assert result.returncode == 0, result.stderr


def blob(env, data: bytes):
    sha = hashlib.sha256(data).hexdigest()
    return sha, env.state / "blobs" / "sha256" / sha[:2] / sha


def doc_of(env, name: str) -> str:
    db = sqlite3.connect(env.state / "documents.sqlite")
    try:
        return db.execute("SELECT doc_id FROM documents WHERE origin_uri=?", ((env.inbox / name).as_uri(),)).fetchone()[0]
    finally:
        db.close()


def verify(env, *extra):
    result = run_cli("verify", "--json", *extra, "--config", env.config)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_verify_finds_reports_and_repairs(env):
    files = {name: f"{name} content\n".encode() * 50 for name in ("flipped", "torn", "lost", "mislabelled", "fine")}
    ingest(env, files)
    code, report = verify(env)
    assert code == 0 and report["findings"] == [] and report["blobs"] == report["versions"] == 5

    sha_flip, flipped = blob(env, files["flipped"])
    flipped.write_bytes(b"X" + files["flipped"][1:])  # same size, wrong bytes
    sha_torn, torn = blob(env, files["torn"])
    torn.write_bytes(files["torn"][:10])
    sha_lost, lost = blob(env, files["lost"])
    lost.unlink()
    stray = env.state / "blobs" / "sha256" / "ab" / "not-a-hash"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"?")
    sha_label, _ = blob(env, files["mislabelled"])
    db = sqlite3.connect(env.state / "documents.sqlite")
    db.execute("UPDATE versions SET size = size + 1 WHERE sha256 = ?", (sha_label,))
    db.commit()
    db.close()

    code, report = verify(env)
    assert code == 1
    found = {(f["problem"], f["sha256"]) for f in report["findings"]}
    assert found == {("blob_corrupt", sha_flip), ("blob_corrupt", sha_torn), ("blob_missing", sha_lost),
                     ("record_size", sha_label), ("blob_stray", None)}
    assert all(f["repair"] is None for f in report["findings"]) and flipped.exists() and stray.exists()
    by_sha = {f["sha256"]: f for f in report["findings"]}
    assert by_sha[sha_flip]["documents"] == [doc_of(env, "flipped")]

    code, report = verify(env, "--repair")
    assert code == 1 and all(f["repair"] for f in report["findings"])
    assert not flipped.exists() and not torn.exists() and not stray.exists()
    assert len(list((env.state / "blobs" / "quarantine").iterdir())) == 3
    shown = json.loads(run_cli("document", doc_of(env, "flipped"), "--json", "--config", env.config).stdout)
    assert shown["damaged"].startswith("blob_corrupt")
    assert json.loads(run_cli("document", doc_of(env, "fine"), "--json", "--config", env.config).stdout)["damaged"] is None

    # the same bytes delivered again: the blob is back and the mark is gone
    env.write(after="keep")
    (env.inbox / "again").write_bytes(files["flipped"])
    ingest(env, {})
    assert flipped.read_bytes() == files["flipped"]
    shown = json.loads(run_cli("document", doc_of(env, "flipped"), "--json", "--config", env.config).stdout)
    assert shown["damaged"] is None
    _, report = verify(env)
    assert sha_flip not in {f["sha256"] for f in report["findings"]}


def test_a_damaged_catalogue_is_one_line_and_exit_65_everywhere(env):
    ingest(env, {"a.txt": b"alpha"})
    (env.state / "documents.sqlite").write_bytes(b"this is not a database" * 200)
    for wal in ("documents.sqlite-wal", "documents.sqlite-shm"):
        (env.state / wal).unlink(missing_ok=True)
    for command in (["run"], ["ingest", "inbox"], ["check-config"], ["verify"]):
        result = run_cli(*command, "--config", env.config, timeout=60)
        assert result.returncode == 65, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "documents.sqlite is damaged" in lines[0] and "restore it from a backup" in lines[0]


def test_the_unit_does_not_restart_on_a_damaged_state():
    unit = (ROOT / "systemd" / "ingestd.service").read_text()
    prevent = next(line for line in unit.splitlines() if line.startswith("RestartPreventExitStatus="))
    assert set(prevent.split("=", 1)[1].split()) >= {"78", "65"}
