"""Fixtures for the s3 connector tests: one moto server per session (reset per test),
an isolated AWS environment, and a per-test ingestd whose files and output are scanned
for the registry's secret after the test."""

from __future__ import annotations

import pytest

from .kit import BUCKET, MotoS3, S3Env

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
            "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE")


@pytest.fixture(scope="session")
def moto_server():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_isolation(tmp_path, monkeypatch):
    """No test (nor its child processes) may see the machine's AWS config or reach IMDS."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto(moto_server):
    """The server, emptied, with the test bucket created and the request log cleared."""
    moto_server.reset()
    moto_server.s3.create_bucket(Bucket=BUCKET)
    moto_server.log.clear()
    yield moto_server
    errors = list(moto_server.log.hook_errors)
    moto_server.reset()
    assert not errors, f"a request hook failed: {errors!r}"


@pytest.fixture
def s3env(tmp_path, moto):
    env = S3Env(tmp_path, moto)
    yield env
    leaks = env.leaks()
    assert not leaks, f"the secret access key leaked into: {leaks}"
