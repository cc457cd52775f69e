"""Masking hides secrets in free text and never rewrites records (issue 23 #1, issue 14 #10).

A profile named like the source ("reports") or like an outcome ("ingest") is an ordinary
word: the manifest on disk, the items file, the API and the CLI must show it as it is.
The secret behind the profile is masked wherever it could reach a message.
"""

from __future__ import annotations

import json

import pytest

from ingestd._lib import redact
from tests.conftest import make_secret

from .kit import SOURCE
from .test_credentials import write_aws_files


@pytest.mark.parametrize("profile", ["bucket", "ingest", "docs"])
def test_a_profile_name_is_never_masked_in_records(s3env, moto, profile):
    """The source is `bucket`, the bucket `docs`; outcomes say `ingested`."""
    secret = make_secret("profile")
    write_aws_files(s3env, profile, "AKIAPROFILEKEY000001", secret)
    s3env.credentials = {"minio": {"type": "aws_profile", "profile": profile}}
    s3env.write_registry()
    moto.put(f"q3/{profile}-summary.txt", b"numbers")
    code, manifest = s3env.ingest_cli()
    assert code == 0, manifest
    on_disk = json.loads((s3env.state / "jobs" / f"{manifest['job_id']}.json").read_text())
    for record in (manifest, on_disk):
        assert record["source"] == SOURCE and "***" not in json.dumps(record)
    (item,) = s3env.items(manifest)
    assert item["outcome"] == "ingested"
    assert item["origin_uri"] == f"s3://docs/q3/{profile}-summary.txt"
    listed = json.loads(s3env.cli("jobs", "--source", SOURCE, "--json").stdout)
    assert [m["job_id"] for m in listed] == [manifest["job_id"]]
    doc = json.loads(s3env.cli("document", item["doc_id"], "--json").stdout)
    assert doc["origin_uri"] == item["origin_uri"] and doc["source"] == SOURCE


def test_temporary_keys_from_sts_are_remembered_for_masking(s3env, moto, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABASEFORSTS000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", make_secret("base"))
    s3env.credentials = {"minio": {"type": "aws_assume_role", "role_arn": "arn:aws:iam::123456789012:role/reader",
                                   "session_name": "bucket", "sts_endpoint_url": moto.url}}
    s3env.write_registry()
    moto.put("a.txt", b"a")
    issued = []
    with s3env.app() as app:
        assert app.run_job(SOURCE, "cli").status == "succeeded"
        frozen = app.connector(SOURCE)._client._request_signer._credentials.get_frozen_credentials()
        issued += [frozen.secret_key, frozen.token]
    for value in issued:
        assert value and value not in redact.scrub_text(f"request signed with {value}")
    # the session name is not a secret: the source's own name stays readable
    assert redact.scrub_text("source bucket") == "source bucket"
