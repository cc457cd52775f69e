"""Archived objects (GLACIER, DEEP_ARCHIVE): the listing names their storage class, so
they are skipped without a GET, reported by one job, and taken once restored into a
readable class, the way the README says (issue 24, item 9)."""

from __future__ import annotations

import hashlib
import sqlite3

from ingestd_s3.keys import origin_uri

from .kit import BUCKET, SOURCE, s3_error

CLASSES = {"cold.txt": "GLACIER", "colder.txt": "DEEP_ARCHIVE", "instant.txt": "GLACIER_IR", "warm.txt": "STANDARD"}
ARCHIVED = {"cold.txt", "colder.txt"}


def remembered(env) -> set[str]:
    db = sqlite3.connect(env.state / "sources" / SOURCE / "s3-objects.sqlite")
    try:
        return {r[0] for r in db.execute("SELECT key FROM skips")}
    finally:
        db.close()


def test_archived_objects_are_skipped_once_without_a_get_and_taken_once_restored(s3env, moto):
    for key, storage_class in CLASSES.items():
        moto.s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode(), StorageClass=storage_class)

    first = s3env.run()

    assert first["status"] == "succeeded"
    assert (first["counters"]["ingested"], first["counters"]["skipped"]) == (2, 2)  # GLACIER_IR is readable
    assert {(e["item"], e["code"]) for e in first["errors"]} == {(origin_uri(BUCKET, k), "unavailable")
                                                                  for k in ARCHIVED}
    assert all("restore it and copy it over itself" in e["message"] for e in first["errors"])
    assert sum(moto.log.count("GET", key=k) for k in ARCHIVED) == 0
    assert remembered(s3env) == ARCHIVED

    moto.log.clear()
    second = s3env.run()
    assert second["status"] == "succeeded" and second["errors"] == [] and second["counters"]["skipped"] == 0
    assert moto.log.count("GET", per_object=True) == 0

    # the README's restore path: restore, then copy the object over itself into a readable class
    moto.s3.restore_object(Bucket=BUCKET, Key="cold.txt", RestoreRequest={"Days": 1})
    moto.s3.copy_object(Bucket=BUCKET, Key="cold.txt", CopySource={"Bucket": BUCKET, "Key": "cold.txt"},
                        StorageClass="STANDARD")
    third = s3env.run()
    assert third["errors"] == [] and third["counters"]["ingested"] == 1
    assert s3env.documents()[origin_uri(BUCKET, "cold.txt")].sha256 == hashlib.sha256(b"cold.txt").hexdigest()
    assert remembered(s3env) == {"colder.txt"}

    # gone from the bucket: forgotten, and no tombstone (it never was a document)
    moto.s3.delete_object(Bucket=BUCKET, Key="colder.txt")
    fourth = s3env.run()
    assert fourth["status"] == "succeeded" and fourth["counters"]["deleted"] == 0
    assert remembered(s3env) == set()


def test_an_object_refused_at_get_as_archived_is_skipped_with_the_remedy(s3env, moto):
    """Intelligent-Tiering's archive tiers do not show in a listing: the GET says it, each
    run until the object is restored (which needs no copy for that class)."""
    moto.put("tiered.txt", b"tiered")
    moto.put("warm.txt", b"warm")
    moto.log.hooks.append(lambda req: s3_error("403 Forbidden", "InvalidObjectState", "archived", "REQ-ARCHIVED")
                          if req.method == "GET" and req.key == "tiered.txt" else None)
    for _ in range(2):
        result = s3env.run()
        assert result["status"] == "succeeded" and result["counters"]["skipped"] == 1
        error = result["errors"][0]
        assert error["code"] == "unavailable" and "restore it" in error["message"]
        assert error["request_id"] == "REQ-ARCHIVED"
    moto.log.hooks.clear()
    assert s3env.run()["counters"]["ingested"] == 1
