import json
import os

import pytest

from ingestd.credentials import Registry
from ingestd.errors import ConfigError

SECRET = "s3cr3t-value-do-not-print"


def registry(tmp_path, data, mode=0o600):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(data))
    os.chmod(path, mode)
    return Registry(path)


def test_inline_env_and_file_values(tmp_path, monkeypatch):
    monkeypatch.setenv("INGESTD_TEST_SECRET", SECRET)
    (tmp_path / "key").write_text(SECRET + "-file\n")
    os.chmod(tmp_path / "key", 0o600)
    reg = registry(tmp_path, {"a": {"type": "aws", "access_key_id": "AKIAEXAMPLE",
                                    "secret_access_key": {"env": "INGESTD_TEST_SECRET"},
                                    "session_token": {"file": str(tmp_path / "key")}}})
    cred = reg.resolve("a")
    assert cred.type == "aws"
    assert cred.get("access_key_id") == "AKIAEXAMPLE"
    assert cred.get("secret_access_key") == SECRET
    assert cred.get("session_token") == SECRET + "-file"
    assert SECRET not in repr(cred) and SECRET not in str(cred.fields)


def test_credentials_directory_expansion(tmp_path, monkeypatch):
    (tmp_path / "s3").write_text("from-systemd")
    os.chmod(tmp_path / "s3", 0o400)  # as systemd hands LoadCredential= files over
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": {"file": "${CREDENTIALS_DIRECTORY}/s3"}}})
    assert reg.resolve("a").get("secret_access_key") == "from-systemd"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_group_or_world_readable_registry(tmp_path, mode):
    reg = registry(tmp_path, {"a": {"type": "aws"}}, mode=mode)
    with pytest.raises(ConfigError) as info:
        reg.resolve("a")
    assert "too open" in str(info.value) and "chmod 600" in str(info.value)


def test_rotation_needs_no_restart(tmp_path):
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": "old-secret-1"}})
    assert reg.resolve("a").get("secret_access_key") == "old-secret-1"
    registry(tmp_path, {"a": {"type": "aws", "secret_access_key": "new-secret-2"}})
    assert reg.resolve("a").get("secret_access_key") == "new-secret-2"


def test_errors_never_quote_secret_values(tmp_path, monkeypatch):
    path = tmp_path / "credentials.json"
    path.write_text('{"a": {"type": "aws", "secret_access_key": "' + SECRET + '",}}')  # bad JSON
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        Registry(path).resolve("a")
    assert SECRET not in str(info.value) and "invalid JSON" in str(info.value)
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": {"env": "NOPE_UNSET"}}})
    with pytest.raises(ConfigError, match="NOPE_UNSET is not set"):
        reg.resolve("a")
    with pytest.raises(ConfigError, match="not defined"):
        reg.resolve("other")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_file_readable_by_others_is_refused(tmp_path, mode):
    """Issue 14 #14: `{"file": …}` secrets were read whatever their permissions."""
    secret = tmp_path / "secret-file"
    secret.write_text("a-secret-value-123")
    os.chmod(secret, mode)
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": {"file": str(secret)}}})
    with pytest.raises(ConfigError) as info:
        reg.resolve("a")
    line = str(info.value)
    assert "too open" in line and f"chmod 600 {secret}" in line and "a-secret-value-123" not in line


def test_a_public_field_may_come_from_a_shared_file(tmp_path):
    (tmp_path / "tenant").write_text("contoso-tenant-id\n")
    os.chmod(tmp_path / "tenant", 0o644)
    reg = registry(tmp_path, {"a": {"type": "azure_client_secret", "tenant_id": {"file": str(tmp_path / "tenant")}}})
    assert reg.resolve("a").get("tenant_id") == "contoso-tenant-id"


def test_env_values_are_trimmed(tmp_path, monkeypatch):
    """Issue 23 #7: a trailing space or newline from `export` reached the signature."""
    monkeypatch.setenv("INGESTD_TEST_SECRET", "  spaced-secret-value \n")
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": {"env": "INGESTD_TEST_SECRET"},
                                    "access_key_id": " AKIAEXAMPLE "}})
    cred = reg.resolve("a")
    assert cred.get("secret_access_key") == "spaced-secret-value" and cred.get("access_key_id") == "AKIAEXAMPLE"


def test_only_secret_fields_are_remembered_for_masking(tmp_path):
    """Issue 23 #1: every value of 6+ characters was masked, `profile` and `tenant_id` included."""
    from ingestd._lib import redact

    reg = registry(tmp_path, {
        "p": {"type": "aws_assume_role", "role_arn": "arn:aws:iam::1:role/reports", "session_name": "reports",
              "source_profile": "ingest", "external_id": "customer-42"},
        "s": {"type": "azure_client_secret", "tenant_id": "contoso", "client_id": "app-client-1",
              "client_secret": "pw1"},
    })
    reg.resolve("p")
    cred = reg.resolve("s")
    assert cred.secret_fields == {"client_secret"}
    text = "reports ingested by ingest for customer-42 in contoso via app-client-1"
    assert redact.scrub_text(text) == text
    assert redact.scrub_text("client secret pw1 refused") == "client secret *** refused"


def test_credentials_directory_unset_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    reg = registry(tmp_path, {"a": {"type": "aws", "secret_access_key": {"file": "${CREDENTIALS_DIRECTORY}/s3"}}})
    with pytest.raises(ConfigError) as info:
        reg.resolve("a")
    line = str(info.value)
    assert "${CREDENTIALS_DIRECTORY} is not set" in line and "LoadCredential=" in line
    assert "systemctl reload ingestd" in line
