"""Credential types over real HTTP (the signing access key is read from each request),
resolution at every job, and `check-config` naming the fix for a bad credential."""

from __future__ import annotations

import json
import subprocess
import sys

from ingestd._lib import redact
from tests.conftest import make_secret

from .kit import ACCESS_KEY, SOURCE


def write_aws_files(env, profile: str, key_id: str, secret: str) -> None:
    (env.root / "aws-config").write_text(f"[profile {profile}]\nregion = us-east-1\n")
    (env.root / "aws-credentials").write_text(
        f"[{profile}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    env.secret_files |= {env.root / "aws-credentials"}
    env.extra_secrets.append(secret)


def test_static_keys_sign_every_request(s3env, moto):
    moto.put("a.txt", b"a")
    s3env.credentials["minio"]["access_key_id"] = "AKIASTATICKEYS000001"
    s3env.write_registry()
    moto.log.clear()
    assert s3env.run()["status"] == "succeeded"
    assert moto.log.access_keys() == {"AKIASTATICKEYS000001"}


def test_a_profile_credential_uses_the_aws_config_files(s3env, moto):
    secret = make_secret("profile")
    write_aws_files(s3env, "reader", "AKIAPROFILEKEY000001", secret)
    s3env.credentials = {"minio": {"type": "aws_profile", "profile": "reader"}}
    s3env.write_registry()
    moto.put("a.txt", b"a")
    moto.log.clear()
    assert s3env.run()["status"] == "succeeded"
    assert moto.log.access_keys() == {"AKIAPROFILEKEY000001"}
    # the profile's secret never passes through the registry, yet messages mask it
    assert secret not in redact.scrub_text(f"signature failed for {secret}")


def test_no_credentials_key_uses_the_default_chain(s3env, moto, monkeypatch):
    secret = make_secret("env")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s3env.extra_secrets.append(secret)
    s3env.write(credentials=None)
    moto.put("a.txt", b"a")
    moto.log.clear()
    assert s3env.run()["status"] == "succeeded"
    assert moto.log.access_keys() == {"AKIAENVIRONMENT00001"}
    assert secret not in redact.scrub_text(f"signature failed for {secret}")  # masked, though not registered


def test_an_assumed_role_signs_with_the_temporary_keys(s3env, moto, monkeypatch):
    secret = make_secret("base")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABASEFORSTS000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s3env.extra_secrets.append(secret)
    s3env.credentials = {"minio": {"type": "aws_assume_role", "role_arn": "arn:aws:iam::123456789012:role/reader",
                                   "external_id": "ext-id-42", "sts_endpoint_url": moto.url}}
    s3env.write_registry()
    moto.put("a.txt", b"a")
    moto.log.clear()
    assert s3env.run()["status"] == "succeeded"
    sts = [r for r in moto.log.requests if r.method == "POST" and not r.bucket]
    assert len(sts) == 1 and sts[0].access_key == "AKIABASEFORSTS000001"
    signing = moto.log.access_keys()
    assert len(signing) == 1 and "AKIABASEFORSTS000001" not in signing


def test_a_rotated_secret_is_picked_up_by_the_next_job(s3env, moto):
    moto.put("a.txt", b"a")
    with s3env.app() as app:
        assert app.run_job(SOURCE, "cli").status == "succeeded"
        s3env.credentials["minio"]["access_key_id"] = "AKIAROTATEDKEY000002"
        s3env.credentials["minio"]["secret_access_key"] = make_secret("rotated")
        s3env.write_registry()
        moto.log.clear()
        assert app.run_job(SOURCE, "cli").status == "succeeded"
    assert moto.log.access_keys() == {"AKIAROTATEDKEY000002"}


def test_a_job_with_an_unusable_credential_type_fails_as_config(s3env, moto):
    s3env.credentials = {"minio": {"type": "azure_client_secret", "client_id": "x", "client_secret": make_secret()}}
    s3env.write_registry()
    manifest = s3env.run()
    assert manifest["status"] == "failed" and manifest["errors"][0]["code"] == "config"
    assert '"aws"' in manifest["errors"][0]["message"]
    assert moto.log.count() == 0  # refused before any request


def check(env, capsys) -> tuple[int, str]:
    """`ingestd check-config`, in this process (it only reads files)."""
    from ingestd.cli import main

    capsys.readouterr()
    code = main(["check-config", "--config", str(env.config)])
    out = capsys.readouterr()
    env.outputs += [out.out, out.err]
    return code, out.out + out.err


def test_check_config_accepts_a_good_source(s3env, capsys):
    assert check(s3env, capsys) == (0, "ok\n")


def test_check_config_names_the_fix_for_a_wrong_type(s3env, capsys):
    s3env.credentials = {"minio": {"type": "azure_client_secret", "client_id": "x", "client_secret": make_secret()}}
    s3env.write_registry()
    code, text = check(s3env, capsys)
    assert code == 78
    assert 'sources "bucket": credentials: credential "minio" has type "azure_client_secret"' in text
    assert '"aws" (access_key_id, secret_access_key, session_token?)' in text and '"aws_profile"' in text


def test_check_config_reports_missing_and_misspelt_fields(s3env, capsys):
    s3env.credentials = {"minio": {"type": "aws", "access_key_id": ACCESS_KEY, "secret_key": s3env.secret}}
    s3env.write_registry()
    code, text = check(s3env, capsys)
    assert code == 78
    assert 'lacks "secret_access_key"' in text and 'unknown field "secret_key"' in text
    assert s3env.secret not in text


def test_check_config_reports_an_undefined_profile(s3env, capsys):
    s3env.credentials = {"minio": {"type": "aws_profile", "profile": "nowhere"}}
    s3env.write_registry()
    code, text = check(s3env, capsys)
    assert code == 78 and "'nowhere' is not defined" in text and "aws configure --profile nowhere" in text


def test_check_config_warns_of_a_prefix_that_also_takes_its_siblings(s3env, moto, capsys):
    """`reports` takes `reports-2024/…` too: a warning, which neither fails check-config
    nor any job (a warning treated as fatal is the SharePoint certificate bug)."""
    moto.put("reports/q1.txt", b"in")
    moto.put("reports-2024/q1.txt", b"sibling")
    s3env.write(prefix="reports")
    code, text = check(s3env, capsys)
    assert code == 0 and "ok\n" in text
    assert 'sources "bucket": prefix: warning: "reports" has no trailing "/"' in text and 'write "reports/"' in text
    manifest = s3env.run()
    assert manifest["status"] == "succeeded" and manifest["counters"]["ingested"] == 2
    s3env.write(prefix="reports/")
    assert check(s3env, capsys) == (0, "ok\n")


def test_the_secret_scan_can_fail(s3env):
    """The leak check every test runs at teardown does find a planted secret."""
    s3env.state.mkdir(exist_ok=True)
    planted = s3env.state / "planted.log"
    planted.write_text(f"oops {s3env.secret}\n")
    assert s3env.leaks() == ["state/planted.log"]
    planted.unlink()
    s3env.outputs.append(json.dumps({"event": "x", "value": s3env.secret}))
    assert s3env.leaks() == ["output #0"]
    s3env.outputs.clear()


def test_the_plugin_and_its_options_import_without_boto3():
    code = (
        "import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None\n"
        "import ingestd_s3\n"
        "from ingestd_s3.connector import S3Connector\n"
        "from ingestd_s3.options import S3Options\n"
        "S3Options(bucket='reports', every='5m')\n"
        "print(S3Connector.unavailable_reason())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'ingestd[s3]'" in done.stdout
