"""`[cluster]` in the config: opt-in, one-line errors, and a core that runs without the
driver (and says exactly what to install when the table asks for it)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.helpers import ROOT, write_config

CLUSTER = {"database_url": "postgresql://ingestd@db.example:5432/ingestd", "blob_store": "s3://blobs/ingestd"}
SOURCE = {"name": "inbox", "kind": "local", "path": "inbox"}


def ingestd(*args, block_psycopg=False, cwd=None) -> subprocess.CompletedProcess:
    """The CLI as a child process; optionally one where psycopg cannot be imported."""
    prelude = "sys.modules['psycopg'] = None; " if block_psycopg else ""
    code = "import sys; " + prelude + "from ingestd.cli import main; raise SystemExit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=60,
                          cwd=cwd or ROOT)


def config(tmp_path, **cluster):
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        sources=[{**SOURCE, "path": str(tmp_path / "inbox")}], cluster={**CLUSTER, **cluster})


def test_the_embedded_default_needs_no_driver(tmp_path):
    (tmp_path / "inbox").mkdir()
    path = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        sources=[{**SOURCE, "path": str(tmp_path / "inbox")}])
    result = ingestd("check-config", "--config", path, block_psycopg=True)
    assert result.returncode == 0, result.stderr
    assert "psycopg" not in result.stderr


def test_cluster_without_the_driver_says_what_to_install(tmp_path):
    path = config(tmp_path)
    for args in (("run",), ("cluster", "status")):
        result = ingestd(*args, "--config", path, block_psycopg=True)
        assert result.returncode == 78, result.stderr
        assert "pip install 'ingestd[cluster]'" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_password_in_the_url_is_refused_naming_the_fix(tmp_path):
    secret = "hunter2-do-not-print"
    path = config(tmp_path, database_url=f"postgresql://ingestd:{secret}@db.example/ingestd")
    result = ingestd("check-config", "--config", path)
    assert result.returncode == 78
    line, = result.stderr.strip().splitlines()
    assert str(path) in line and "cluster.database_url" in line and "database_credentials" in line
    assert secret not in result.stderr


def test_bad_cluster_values_are_one_line_each(tmp_path):
    path = config(tmp_path, blob_store="http://not-s3", lease_ttl="1s", instance_id="../x")
    result = ingestd("check-config", "--config", path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(str(path)) for line in lines)
    assert {k for k in ("cluster.blob_store", "cluster.lease_ttl", "cluster.instance_id") if any(k in x for x in lines)} \
        == {"cluster.blob_store", "cluster.lease_ttl", "cluster.instance_id"}


def test_sinks_in_a_cluster_config_are_checked_as_embedded_ones(tmp_path):
    """Sinks run in cluster mode (cluster.sinks): a `[[sinks]]` table there is accepted,
    and a bad one is refused in one line naming it, the secret never printed."""
    (tmp_path / "inbox").mkdir()
    secret = tmp_path / "hook.secret"
    secret.write_text("s3cret-hmac-key-do-not-print\n")
    secret.chmod(0o600)
    hook = {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/x", "secret_file": str(secret)}
    good = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        sources=[{**SOURCE, "path": str(tmp_path / "inbox")}], cluster=CLUSTER, sinks=[hook])
    result = ingestd("check-config", "--config", good)
    assert result.returncode == 0, result.stderr
    bad = write_config(tmp_path / "bad.toml", daemon={"state_dir": str(tmp_path / "state")},
                       sources=[{**SOURCE, "path": str(tmp_path / "inbox")}], cluster=CLUSTER,
                       sinks=[hook, {"name": "other", "kind": "no-such-kind"}])
    result = ingestd("check-config", "--config", bad)
    assert result.returncode == 78, result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"{bad}: sinks") and "no-such-kind" in line
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_the_local_catalogue_commands_refuse_a_cluster_config(tmp_path):
    """`ingestd documents|document|cat|changes` read the embedded store: on a cluster
    instance that would answer 'nothing' for a store that has everything."""
    path = config(tmp_path)
    for args in (("documents",), ("document", "0" * 32), ("cat", "0" * 32), ("changes",)):
        result = ingestd(*args, "--config", path)
        assert result.returncode == 2, (args, result.stderr)
        line, = result.stderr.strip().splitlines()
        assert "cluster mode" in line and "GET /documents" in line, line
