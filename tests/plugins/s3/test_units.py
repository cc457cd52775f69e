"""The pure parts: key → URI/name rules, option validation, credential checks, error
mapping and the timestamp parser, without a server."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import botocore.utils
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, strategies as st
from pydantic import ValidationError

from ingestd.config import ConfigError, parse
from ingestd.credentials import Credential
from ingestd.errors import Code
from ingestd_s3 import credentials as cred_types
from ingestd_s3.client import parse_timestamp
from ingestd_s3.keys import (canonical_time, file_name, is_folder_marker, key_of, object_name, origin_uri,
                             plain_etag, relpath)
from ingestd_s3.options import S3Options
from ingestd_s3.remote import client_error

keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300)


@given(keys)
def test_origin_uri_round_trips_every_key_exactly(key):
    uri = origin_uri("bucket", key)
    assert key_of(uri) == ("bucket", key)
    assert uri.isascii() and not any(c in uri for c in " \n\t#?")
    segments = uri.split("/")[3:]
    assert "." not in segments and ".." not in segments


def test_origin_uri_keeps_plain_keys_readable():
    assert origin_uri("docs", "reports/2026/q1.pdf") == "s3://docs/reports/2026/q1.pdf"
    assert origin_uri("docs", "a b+c%.txt") == "s3://docs/a%20b%2Bc%25.txt"
    assert origin_uri("docs", "../x") == "s3://docs/%2E%2E/x"


def test_key_rules():
    assert relpath("in/sub/a.txt", "in/") == "sub/a.txt" and relpath("in/a", "in") == "a"
    assert relpath("report-1.csv", "report") == "-1.csv" and relpath("a/b", "") == "a/b"
    assert is_folder_marker("a/") and is_folder_marker("a_$folder$") and not is_folder_marker("a")
    assert file_name("a/b.txt") == "b.txt" and file_name("/abs") == "abs"
    assert [file_name(k) for k in (".", "..", "a/..", "a/.", "a/")] == [None] * 5
    assert [object_name(k) for k in ("photos/", "a/b//", "x_$folder$", "b.txt")] == ["photos", "b", "x_$folder$",
                                                                                     "b.txt"]
    assert [object_name(k) for k in ("/", "a/../", "./", "..")] == [None] * 4
    assert plain_etag('"abc-2"') == "abc-2" and plain_etag('W/"x"') == "x" and plain_etag(None) == ""
    assert canonical_time(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)) == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize("text", [
    "2026-11-30T02:01:14.000Z", "2026-11-30T02:01:14Z", "2026-11-30T02:01:14.123456+02:00",
    "Mon, 30 Nov 2026 02:01:14 GMT", "Mon, 30 Nov 2026 02:01:14 -0000", "1700000000",
])
def test_fast_timestamps_agree_with_botocore(text):
    ours = parse_timestamp(text)
    assert ours == botocore.utils.parse_timestamp(text) and ours.tzinfo is not None


def test_options_defaults_and_inherited_groups():
    opts = S3Options(bucket="reports")
    assert (opts.prefix, opts.concurrency, opts.addressing_style, opts.min_age_seconds) == ("", 8, "auto", 0.0)
    assert (opts.on_delete, opts.max_delete_fraction, opts.include, opts.every) == ("tombstone", 0.5, ["**"], None)
    assert S3Options(bucket="reports", min_age_seconds="5m").min_age_seconds == 300.0


@pytest.mark.parametrize("bad, where", [
    ({"bucket": "s3://reports/2026"}, "put the key path in 'prefix'"),
    ({"bucket": "a b"}, "not a bucket name"),
    ({"bucket": "ok", "endpoint_url": "minio:9000"}, "not an http(s) URL"),
    ({"bucket": "ok", "concurrency": 0}, "greater than or equal to 1"),
    ({"bucket": "ok", "addressing_style": "dns"}, "'auto', 'path' or 'virtual'"),
    ({"bucket": "ok", "every": "5m", "cron": "* * * * *"}, "either 'every' or 'cron'"),
    ({"bucket": "ok", "max_delete_fraction": 2}, "less than or equal to 1"),
])
def test_bad_options_are_refused_with_a_hint(bad, where):
    with pytest.raises(ValidationError) as info:
        S3Options(**bad)
    assert where in str(info.value)


def test_an_unknown_key_is_reported_with_the_allowed_ones():
    data = {"sources": [{"name": "b", "kind": "s3", "bucket": "ok", "bukket": "x"}]}
    with pytest.raises(ConfigError) as info:
        parse(data, {"s3": S3Options}, base_dir=Path("/"))
    assert "did you mean 'bucket'?" in str(info.value)


def cred(type_: str, **fields) -> Credential:
    from pydantic import SecretStr

    return Credential("c", type_, {k: SecretStr(v) for k, v in fields.items()})


def test_credential_problems_name_the_fix():
    assert cred_types.problems(cred("aws", access_key_id="a", secret_access_key="s")) == []
    assert cred_types.problems(cred("aws_assume_role", role_arn="arn:x", external_id="e")) == []
    assert "lacks \"profile\"" in cred_types.problems(cred("aws_profile"))[0]
    assert "unknown field \"region\"" in cred_types.problems(cred("aws_profile", profile="p", region="x"))[0]
    wrong = cred_types.problems(cred("gcp_service_account", key="k"))
    assert len(wrong) == 1 and '"aws_assume_role" (role_arn, external_id?' in wrong[0]


def error(code: str, status: int, **extra) -> ClientError:
    response = {"Error": {"Code": code, "Message": "msg", **extra},
                "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "RID"}}
    return ClientError(response, "ListObjectsV2")


@pytest.mark.parametrize("code, status, expected", [
    ("AccessDenied", 403, Code.AUTH), ("InvalidAccessKeyId", 403, Code.AUTH),
    ("SignatureDoesNotMatch", 403, Code.AUTH), ("ExpiredToken", 400, Code.AUTH),
    ("NoSuchBucket", 404, Code.NOT_FOUND), ("NoSuchKey", 404, Code.NOT_FOUND),
    ("SlowDown", 503, Code.THROTTLED), ("Throttling", 400, Code.THROTTLED),
    ("InternalError", 500, Code.TRANSIENT), ("PreconditionFailed", 412, Code.TRANSIENT),
    ("PermanentRedirect", 301, Code.CONFIG), ("Weird", 418, Code.TRANSIENT),
    ("InvalidObjectState", 403, Code.UNAVAILABLE),
])
def test_service_errors_map_to_typed_codes(code, status, expected):
    err = client_error(error(code, status), "listing s3://b/")
    assert err.code == expected and err.request_id == "RID" and code in err.message


def test_error_messages_never_quote_the_request():
    err = client_error(error("SignatureDoesNotMatch", 403, StringToSign="AWS4-HMAC-SHA256\nsecret-ish",
                             AWSAccessKeyId="AKIA123", SignatureProvided="abc"), "GET s3://b/k")
    assert "secret-ish" not in err.message and "AKIA123" not in err.message and err.bad_credentials
