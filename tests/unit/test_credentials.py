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
