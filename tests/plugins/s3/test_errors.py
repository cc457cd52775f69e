"""Failures map to typed codes with the service's request id, and one object failing
makes the job partial without losing the others; the next run retries only it."""

from __future__ import annotations

import json
import socket
import time

import pytest

from ingestd_s3 import client as client_mod

from .kit import BUCKET, s3_error


@pytest.fixture
def iam_user(moto):
    """A real IAM user in moto allowed s3:*; then moto starts enforcing auth."""
    iam = moto.client("iam")
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.create_user(UserName="nobody")
    denied = iam.create_access_key(UserName="nobody")["AccessKey"]
    moto.put("a.txt", b"a")
    moto.require_auth()
    return key, denied


def use_keys(env, key_id: str, secret: str) -> None:
    env.credentials = {"minio": {"type": "aws", "access_key_id": key_id, "secret_access_key": secret}}
    env.write_registry()


def only_error(manifest: dict) -> dict:
    assert manifest["status"] == "failed", manifest
    assert len(manifest["errors"]) == 1, manifest["errors"]
    return manifest["errors"][0]


def test_valid_keys_work_when_moto_checks_signatures(s3env, iam_user):
    key, _ = iam_user
    use_keys(s3env, key["AccessKeyId"], key["SecretAccessKey"])
    result = s3env.run()
    assert result["status"] == "succeeded" and result["counters"]["ingested"] == 1


def test_a_wrong_secret_fails_the_job_as_auth_without_echoing_it(s3env, moto, iam_user):
    key, _ = iam_user
    use_keys(s3env, key["AccessKeyId"], "wrong-" + s3env.secret)
    result = s3env.cli("ingest", "bucket")  # not --json: the debug log lines are captured too
    assert result.returncode == 1
    manifest = json.loads(next((s3env.state / "jobs").glob("*Z-*.json")).read_text())
    error = only_error(manifest)
    assert error["code"] == "auth" and "SignatureDoesNotMatch" in error["message"]
    assert error["request_id"], "the S3 request id must be carried"
    assert any(line.get("event") == "job finished" for line in s3env.log_lines())


def test_an_unknown_access_key_fails_the_job_as_auth(s3env, iam_user):
    use_keys(s3env, "AKIAUNKNOWNUNKNOWN00", s3env.secret)
    error = only_error(s3env.run())
    assert error["code"] == "auth" and "InvalidAccessKeyId" in error["message"] and error["request_id"]


def test_keys_without_permission_fail_the_job_as_auth(s3env, iam_user):
    _, denied = iam_user
    use_keys(s3env, denied["AccessKeyId"], denied["SecretAccessKey"])
    error = only_error(s3env.run())
    assert error["code"] == "auth" and "AccessDenied" in error["message"]


def test_a_missing_bucket_fails_the_job_as_not_found(s3env):
    s3env.write(bucket="no-such-bucket")
    error = only_error(s3env.run())
    assert error["code"] == "not_found" and "no-such-bucket" in error["message"] and error["request_id"]


def test_listing_throttled_past_the_retries_fails_as_throttled(s3env, moto, monkeypatch):
    monkeypatch.setattr(client_mod, "ATTEMPTS", 2)
    moto.put("a.txt", b"a")
    moto.log.hooks.append(lambda req: s3_error("503 Slow Down", "SlowDown", "Reduce your request rate.",
                                               "REQ-THROTTLED-LIST") if req.is_list else None)
    error = only_error(s3env.run())
    assert error["code"] == "throttled" and error["request_id"] == "REQ-THROTTLED-LIST"
    assert moto.log.lists() == 2  # botocore retried once before giving up


def test_one_throttled_object_makes_the_job_partial_and_is_retried_next_run(s3env, moto, monkeypatch):
    monkeypatch.setattr(client_mod, "ATTEMPTS", 2)
    for name in ("a.txt", "b.txt", "c.txt"):
        moto.put(name, name.encode())
    moto.log.hooks.append(lambda req: s3_error("503 Slow Down", "SlowDown", "Reduce your request rate.",
                                               "REQ-SLOW-B") if req.key == "b.txt" else None)
    partial = s3env.run()
    assert partial["status"] == "partial"
    assert partial["counters"]["ingested"] == 2 and partial["counters"]["failed"] == 1
    error = partial["errors"][0]
    assert (error["code"], error["item"], error["request_id"]) == ("throttled", f"s3://{BUCKET}/b.txt", "REQ-SLOW-B")
    moto.log.hooks.clear()
    moto.log.clear()

    healed = s3env.run()

    assert healed["status"] == "succeeded" and healed["counters"]["ingested"] == 1
    assert moto.log.count("GET", per_object=True) == 1 and moto.log.count(key="b.txt") == 1


def test_an_unreachable_endpoint_fails_the_job_as_transient(s3env, monkeypatch):
    monkeypatch.setattr(client_mod, "ATTEMPTS", 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        s3env.write(endpoint_url=f"http://127.0.0.1:{port}")
        error = only_error(s3env.run())
    assert error["code"] == "transient" and "cannot reach" in error["message"]


def test_a_silent_endpoint_is_given_up_on_after_read_timeout(s3env, monkeypatch):
    monkeypatch.setattr(client_mod, "ATTEMPTS", 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # connections complete in the kernel's backlog; nothing ever answers
        s3env.write(endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}", read_timeout="0.3s")
        started = time.monotonic()
        error = only_error(s3env.run())
        waited = time.monotonic() - started
    assert error["code"] == "transient", error
    assert waited < 30, f"waited {waited:.1f} s: the 60 s default was used, not read_timeout"


def test_an_unreadable_state_file_fails_the_job_with_the_way_out(s3env, moto):
    moto.put("a.txt", b"a")
    state = s3env.state / "sources" / "bucket" / "s3-objects.sqlite"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"this is not a database" * 100)
    error = only_error(s3env.run())
    assert error["code"] == "io" and "move the file away" in error["message"]
    state.unlink()
    assert s3env.run()["status"] == "succeeded"
