"""The lean GET path (ingestd_s3.lean): what it must keep of botocore's `get_object`.

Each test talks HTTP to moto; faults are answered by the request log's hooks, shaped as
S3 answers them.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, IncompleteReadError
from botocore.retries.standard import ExponentialBackoff
from pydantic import SecretStr

import ingestd_s3.client as client_mod
from ingestd.plugin import Credential
from ingestd_s3 import lean
from ingestd_s3.options import S3Options

from .kit import ACCESS_KEY, BUCKET, SOURCE, s3_error

HOSTILE_KEYS = ["plain.txt", "a b/c d.txt", "ünï/cödé.txt", "../up.txt", "a//b.txt", "./x", "%2F%41.txt",
                "~tilde+plus=eq&amp;.txt", "q?x=1#frag", "semi;colon,comma'quote\"", "trailing/", " lead"]


@pytest.fixture
def instant_retries(monkeypatch):
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def _client(moto, secret: str = "s3-secret", **options):
    settings = {"bucket": BUCKET, "endpoint_url": moto.url,
                "addressing_style": "path", **options}
    cred = Credential("c", "aws", {"access_key_id": SecretStr(ACCESS_KEY), "secret_access_key": SecretStr(secret)})
    return client_mod.build(S3Options.model_validate(settings), cred, SOURCE)


class _Sent(Exception):
    pass


def _botocore_url(client, bucket: str, key: str) -> str:
    """The URL `get_object` puts on the wire for `key` (stopped before it is sent)."""
    seen = []

    def stop(request, **_):
        seen.append(request.url)
        raise _Sent

    client.meta.events.register_first("before-send.s3.GetObject", stop, unique_id="test-sent")
    try:
        with pytest.raises(_Sent):
            client.get_object(Bucket=bucket, Key=key)
    finally:
        client.meta.events.unregister("before-send.s3.GetObject", unique_id="test-sent")
    return seen[0]


def test_the_lean_path_is_taken_and_reads_what_get_object_reads(moto):
    moto.put("dir/a.txt", b"hello")
    client = _client(moto)
    get = lean.getter(client, BUCKET)
    assert getattr(get, "__self__", None).__class__ is lean.LeanGet, "moto with keys must take the lean path"
    mine, theirs = get("dir/a.txt"), client.get_object(Bucket=BUCKET, Key="dir/a.txt")
    assert mine["Body"].read() == theirs["Body"].read() == b"hello"
    for field in ("ETag", "ContentLength", "LastModified", "ContentType"):
        assert mine[field] == theirs[field], field
    assert bool(mine["ResponseMetadata"]["RequestId"]) == bool(theirs["ResponseMetadata"]["RequestId"])


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_urls_are_the_ones_botocore_builds_for_hostile_keys(moto, style):
    aws = client_mod.build(S3Options.model_validate({"bucket": "my-bucket",
                                                     "region": "eu-west-1", "addressing_style": style}),
                           Credential("c", "aws", {"access_key_id": SecretStr(ACCESS_KEY),
                                                   "secret_access_key": SecretStr("x")}), SOURCE)
    for client, bucket in ((aws, "my-bucket"), (_client(moto, addressing_style=style), BUCKET)):
        getter = lean.LeanGet.build(client, bucket)
        assert getter is not None
        for key in HOSTILE_KEYS:
            assert getter.url(key) == _botocore_url(client, bucket, key), key


def test_hostile_keys_are_fetched_by_the_lean_path(moto):
    client = _client(moto)
    get = lean.getter(client, BUCKET)
    for i, key in enumerate(HOSTILE_KEYS):
        moto.put(key, f"body {i}".encode())
    for i, key in enumerate(HOSTILE_KEYS):
        assert get(key)["Body"].read() == f"body {i}".encode(), key


def test_a_slowdown_503_is_retried_then_the_object_is_read(moto, instant_retries):
    moto.put("a.txt", b"abc")
    answers = iter([s3_error("503 Slow Down", "SlowDown", "Reduce your request rate.", "REQ-SLOW")])
    moto.log.hooks.append(lambda req: next(answers, None) if req.key == "a.txt" else None)
    assert lean.getter(_client(moto), BUCKET)("a.txt")["Body"].read() == b"abc"
    assert moto.log.count("GET", key="a.txt") == 2


def test_slowdown_on_every_attempt_stops_at_the_policy_and_raises_the_services_error(moto, instant_retries,
                                                                                      monkeypatch):
    monkeypatch.setattr(client_mod, "ATTEMPTS", 3)
    moto.put("a.txt", b"abc")
    moto.log.hooks.append(lambda req: s3_error("503 Slow Down", "SlowDown", "Reduce your request rate.",
                                               "REQ-SLOW") if req.key == "a.txt" else None)
    with pytest.raises(ClientError) as caught:
        lean.getter(_client(moto), BUCKET)("a.txt")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert caught.value.response["ResponseMetadata"]["RequestId"] == "REQ-SLOW"
    assert moto.log.count("GET", key="a.txt") == 3


def test_a_missing_key_is_botocores_no_such_key_without_retries(moto, instant_retries):
    client = _client(moto)
    with pytest.raises(client.exceptions.NoSuchKey):
        lean.getter(client, BUCKET)("gone.txt")
    assert moto.log.count("GET", key="gone.txt") == 1


def test_a_body_shorter_than_its_content_length_is_refused(moto):
    def cut(req):
        if req.key == "a.txt":
            return "200 OK", [("Content-Length", "100"), ("ETag", '"abc"')], b"x" * 50
        return None

    moto.put("a.txt", b"x" * 100)
    moto.log.hooks.append(cut)
    body = lean.getter(_client(moto), BUCKET)("a.txt")["Body"]
    with pytest.raises(IncompleteReadError):
        for _ in body.iter_chunks(1 << 20):
            pass


def test_a_truncated_body_fails_only_its_object_and_stores_nothing(s3env, moto):
    moto.put("a.txt", b"x" * 100)
    moto.put("b.txt", b"y" * 100)
    moto.log.hooks.append(lambda req: ("200 OK", [("Content-Length", "100"), ("ETag", '"abc"')], b"x" * 50)
                          if req.key == "a.txt" else None)
    job = s3env.run()
    assert job["status"] == "partial" and job["counters"]["ingested"] == 1
    [error] = job["errors"]
    assert (error["code"], error["item"]) == ("transient", f"s3://{BUCKET}/a.txt")
    assert not list((s3env.state / "workspace").rglob("*a.txt"))


SIGNATURE = "f" * 64
REJECTED = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
            "<Message>The request signature we calculated does not match the signature you provided.</Message>"
            f"<AWSAccessKeyId>{ACCESS_KEY}</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign>"
            f"<SignatureProvided>{SIGNATURE}</SignatureProvided><RequestId>REQ-403</RequestId></Error>").encode()


def _reject(req):
    if req.key == "a.txt":
        return "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(REJECTED)))], REJECTED
    return None


def test_a_403_is_the_client_error_get_object_raises(moto):
    moto.put("a.txt", b"a")
    moto.log.hooks.append(_reject)
    client = _client(moto)
    errors = []
    for get in (lean.getter(client, BUCKET), lambda key: client.get_object(Bucket=BUCKET, Key=key)):
        with pytest.raises(ClientError) as caught:
            get("a.txt")
        errors.append(caught.value)
    mine, theirs = errors
    assert type(mine) is type(theirs)
    assert mine.response["Error"] == theirs.response["Error"]
    assert mine.response["ResponseMetadata"].get("RequestId") == theirs.response["ResponseMetadata"].get("RequestId")
    assert moto.log.count("GET", key="a.txt") == 2  # one each: credentials rejected are not retried


def test_a_403_stops_the_job_as_auth_and_reports_no_signature_material(s3env, moto):
    moto.put("a.txt", b"a")
    moto.log.hooks.append(_reject)
    job = s3env.run()
    assert job["status"] == "failed"
    [error] = job["errors"]
    assert error["code"] == "auth"
    text = str(job) + "".join(s3env.outputs)
    assert SIGNATURE not in text and "StringToSign" not in text and "secret-ish" not in text
    assert moto.log.count("GET", key="a.txt") == 1


def test_each_get_is_signed_with_the_credentials_of_its_moment(moto):
    """Refreshable credentials (a role, an instance profile) are asked at every GET: a refresh
    signs the next request with the new keys."""
    from datetime import datetime, timedelta, timezone

    from botocore.credentials import RefreshableCredentials

    issued = iter(f"AKIAREFRESHED{i:07d}" for i in range(100))

    def fetch():  # inside botocore's advisory window: refreshed at every use
        return {"access_key": next(issued), "secret_key": "s", "token": None,
                "expiry_time": (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()}

    moto.put("a.txt", b"a")
    client = _client(moto)
    client._request_signer._credentials = RefreshableCredentials.create_from_metadata(fetch(), fetch, "test")
    get = lean.getter(client, BUCKET)
    moto.log.clear()
    for _ in range(2):
        get("a.txt")["Body"].read()
    with moto.log.lock:
        signers = [r.access_key for r in moto.log.requests if r.key == "a.txt"]
    assert len(signers) == 2 and len(set(signers)) == 2 and all(k.startswith("AKIAREFRESHED") for k in signers)
