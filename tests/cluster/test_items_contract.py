"""`GET /ingest/{id}/items` held to one contract by both backends: an embedded daemon's
items file and a cluster's `job_items` rows (written by the job on instance a, read from
instance b) give the same JSON, the same paging and the same end of the list."""

from __future__ import annotations

from tests.integration.test_api_support import Client

from .kit import DOCS
from .test_feed_contract import OBJECTS, backend, run_job  # noqa: F401 - `backend` is a fixture

ITEM_KEYS = {"outcome", "origin_uri", "doc_id", "sha256", "size", "mime", "error"}


def items(client: Client, job_id: str, limit: int) -> list[dict]:
    """Every item of a finished job, page by page; the last page says there is no more."""
    got, after = [], None
    while True:
        page = client.get(f"/ingest/{job_id}/items?limit={limit}" + (f"&after={after}" if after else "")).json
        assert page["job_id"] == job_id and len(page["items"]) <= limit
        got += page["items"]
        if page["next_after"] is None:
            assert page["links"]["next"] is None
            return got
        assert page["links"]["next"].endswith(f"after={page['next_after']}")
        after = page["next_after"]


def test_items_of_a_job_are_served_alike_by_both_backends(backend):
    r = backend.reader
    first = r.get("/jobs?source=bucket").json["jobs"][-1]["job_id"]
    listed = items(r, first, limit=100)
    assert items(r, first, limit=2) == listed  # paging gives the same items, in the same order
    assert all(set(i) == ITEM_KEYS for i in listed), listed[0]
    docs = {d["origin_uri"]: d for d in r.get("/documents?limit=100").json["documents"]}
    assert sorted(listed, key=lambda i: i["origin_uri"]) == [
        {"outcome": "ingested", "origin_uri": uri, "doc_id": d["doc_id"], "sha256": d["sha256"], "size": d["size"],
         "mime": d["mime"], "error": None} for uri, d in sorted(docs.items())]
    assert len(listed) == len(OBJECTS)

    backend.moto.s3.delete_object(Bucket=DOCS, Key="a/one.txt")
    backend.moto.put("b/three.txt", b"three, rewritten\n", bucket=DOCS)
    second = run_job(backend)
    assert (second["counters"]["deleted"], second["counters"]["ingested"]) == (1, 1), second
    got = items(r, second["job_id"], limit=1)
    assert len(got) == 2, got  # the unchanged ones are counted, not listed
    by_outcome = {i["outcome"]: i for i in got}
    gone, updated = docs[f"s3://{DOCS}/a/one.txt"], docs[f"s3://{DOCS}/b/three.txt"]
    assert by_outcome["deleted"] == {"outcome": "deleted", "origin_uri": gone["origin_uri"], "doc_id": gone["doc_id"],
                                     "sha256": None, "size": None, "mime": None, "error": None}
    now = r.get(f"/documents/{updated['doc_id']}").json
    assert by_outcome["ingested"] == {"outcome": "ingested", "origin_uri": updated["origin_uri"],
                                      "doc_id": updated["doc_id"], "sha256": now["sha256"], "size": now["size"],
                                      "mime": now["mime"], "error": None}

    end = r.get(f"/ingest/{second['job_id']}/items?after=999999").json
    assert (end["items"], end["next_after"]) == ([], None)
    r.get("/ingest/" + "0" * 26 + "/items").error(404, "not_found")
    r.get(f"/ingest/{first}/items?after=x").error(400, "invalid_query")
