"""`ingestd cluster verify` checks each source's sync-state pointer: the snapshot it names
is on S3, its bytes hash to its name, and it is a tar a restore would extract. One line
per bad source, exit 1; sound states are counted and pass."""

from __future__ import annotations

import io
import tarfile

from ingestd.cluster import sync_state
from ingestd.cluster.blobs import BlobStore
from tests.support.helpers import run_cli

from .conftest import BUCKET, add_sources
from .kit import instance_config, write_registry


def point(db, source: str, key: str) -> None:
    db.execute("UPDATE sources SET state_key = %s, state_fence = 1, state_saved_at = now() WHERE name = %s",
               (key, source))


def escaping_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as tar:
        info = tarfile.TarInfo("../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


def test_verify_reports_missing_damaged_and_unreadable_state_snapshots(pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url,
                          registry=write_registry(tmp_path / "credentials.json", pg.password), ttl=8)
    blobs = BlobStore(s3.client(), BUCKET, "store")
    names = ["deleted", "corrupted", "garbage", "escaping", "sound", "fresh"]
    add_sources(db, *names)
    state = tmp_path / "state"
    (state / "cursors").mkdir(parents=True)
    (state / "cursors" / "s3.json").write_text('{"after": "f/0042.txt"}')
    for name in ["deleted", "corrupted", "sound"]:
        point(db, name, blobs.put_snapshot(name, sync_state.pack(state)))
    point(db, "garbage", blobs.put_snapshot("garbage", b"not a tar at all\n" * 40))
    point(db, "escaping", blobs.put_snapshot("escaping", escaping_tar()))  # "fresh" has saved none yet

    clean = run_cli("cluster", "verify", "--config", cfg)
    assert clean.returncode == 1  # garbage and escaping are bad from the start
    keys = dict(db.execute("SELECT name, state_key FROM sources").fetchall())
    s3.s3.delete_object(Bucket=BUCKET, Key=keys["deleted"])
    s3.s3.put_object(Bucket=BUCKET, Key=keys["corrupted"], Body=b"a truncated upload")

    result = run_cli("cluster", "verify", "--config", cfg)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    bad = {line.split("'")[1]: line for line in lines if line.startswith("source_state: ")}
    assert set(bad) == {"deleted", "corrupted", "garbage", "escaping"}, result.stdout
    assert "missing from the blob store" in bad["deleted"] and keys["deleted"] in bad["deleted"]
    assert "do not match its name" in bad["corrupted"]
    assert "not a readable snapshot" in bad["garbage"]
    assert "a restore would refuse it" in bad["escaping"]
    assert "5 source states" in lines[0] and lines[-1] == "4 problem(s)"

    for name in ["garbage", "escaping"]:  # mended: each points at a sound snapshot, or has its bytes back
        point(db, name, blobs.put_snapshot(name, sync_state.pack(state)))
    for name in ["deleted", "corrupted"]:
        s3.s3.put_object(Bucket=BUCKET, Key=keys[name], Body=sync_state.pack(state))
    mended = run_cli("cluster", "verify", "--config", cfg)
    assert mended.returncode == 0 and mended.stdout.splitlines()[-1] == "ok", mended.stdout + mended.stderr
