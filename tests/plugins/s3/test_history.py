"""History is append-only (issue 24, item 8): a new S3 version with the same bytes is
recorded as a metadata version, and the version before keeps its own provenance."""

from __future__ import annotations

import hashlib
import json

from ingestd_s3.keys import origin_uri

from tests.support.helpers import wait_for

from .kit import BUCKET


def test_a_same_bytes_rewrite_in_a_versioned_bucket_is_a_metadata_version(s3env, moto):
    moto.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first_version = moto.s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"same bytes")["VersionId"]
    first = s3env.run()
    assert first["counters"]["ingested"] == 1
    stamp = moto.s3.head_object(Bucket=BUCKET, Key="a.txt")["LastModified"]
    # same ETag; rewrite until S3's one-second LastModified has moved (a condition, not a delay):
    # a listing tells a rewrite by ETag and LastModified, and one within the same second is none
    rewrites = []
    wait_for(lambda: rewrites.append(moto.s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"same bytes")["VersionId"])
             or moto.s3.head_object(Bucket=BUCKET, Key="a.txt")["LastModified"] != stamp,
             timeout=30, interval=0.2, message="a LastModified after the first one")
    second_version = rewrites[-1]
    assert second_version != first_version

    again = s3env.run()

    assert again["status"] == "succeeded"
    assert again["counters"]["ingested"] == 0 and again["counters"]["unchanged"] == 1  # content did not change
    doc = s3env.documents()[origin_uri(BUCKET, "a.txt")]
    assert (doc.version, doc.kind, doc.metadata["version_id"]) == (2, "metadata", second_version)
    [earlier] = doc.versions
    assert (earlier.version, earlier.kind, earlier.metadata["version_id"]) == (1, "content", first_version)
    assert earlier.job_id == first["job_id"] and doc.job_id == again["job_id"]
    assert doc.sha256 == earlier.sha256 == hashlib.sha256(b"same bytes").hexdigest()
    changes = [json.loads(line) for line in s3env.cli("changes", "--json").stdout.splitlines()]
    assert [(c["type"], c["version"], c["sha256"]) for c in changes] == [
        ("stored", 1, doc.sha256), ("updated", 2, doc.sha256)]  # the feed says: same bytes, new version
