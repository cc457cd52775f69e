"""A record names a blob only for bytes core has measured: not a file already sitting at
the blob's path with the wrong size, not a connector's word about a file it hands over."""

import hashlib
import json
import os
import sqlite3
import sys

import pytest

from tests.support.helpers import run_cli, write_config
from tests.support.procs import THIRDPARTY, plugin_site


def versions(state) -> list[tuple]:
    db = sqlite3.connect(state / "documents.sqlite")
    try:
        return db.execute("SELECT origin_uri, sha256, size FROM versions ORDER BY origin_uri").fetchall()
    finally:
        db.close()


def test_a_planted_empty_blob_is_replaced_by_the_real_bytes(env):
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    planted = env.state / "blobs" / "sha256" / sha[:2] / sha
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"")  # what a power cut between link and flush, or a hostile user, leaves
    (env.inbox / "report.bin").write_bytes(data)
    result = run_cli("ingest", "inbox", "--json", "--config", env.config)
    assert result.returncode == 0, result.stderr
    assert planted.read_bytes() == data
    assert versions(env.state) == [((env.inbox / "report.bin").as_uri(), sha, 5000)]


@pytest.mark.parametrize("claim", ["zeros", "none", "honest"])
def test_what_a_connector_claims_about_an_owned_file_is_checked(tmp_path, claim):
    folder = tmp_path / "remote"
    folder.mkdir()
    files = {f"f{i}.txt": f"different content {i}\n".encode() for i in range(3)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "remote", "kind": "claims", "folder": "remote", "claim": claim}])
    site = plugin_site(tmp_path, {"claims": "ingestd_claimsplugin"})
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(THIRDPARTY), *sys.path])}
    result = run_cli("ingest", "remote", "--json", "--config", config, env=env)
    manifest = json.loads(result.stdout)
    rows = versions(tmp_path / "state")
    if claim == "zeros":
        assert result.returncode == 1 and manifest["counters"]["failed"] == 3
        assert {e["code"] for e in manifest["errors"]} == {"integrity"}
        assert rows == [], "three files claiming one hash must not become documents"
        return
    assert result.returncode == 0, result.stderr
    assert rows == [(f"claims://{name}", hashlib.sha256(data).hexdigest(), len(data)) for name, data in files.items()]
    for _, sha, size in rows:
        assert (tmp_path / "state" / "blobs" / "sha256" / sha[:2] / sha).stat().st_size == size
