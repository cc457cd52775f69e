"""Content reads on a cluster instance, over real HTTP: the bytes stream S3 → instance →
client in large blocks (ETag, Range and 304 as embedded), and a blob store that fails
(5xx) or is unreachable (its endpoint closed) answers `503 blob_store_unavailable` with
`Retry-After`, a retryable condition, not a 500; a blob missing from the store stays
`404 content_missing`."""

from __future__ import annotations

import hashlib

from tests.integration.test_api_support import Client
from tests.plugins.s3.kit import s3_error
from tests.support.helpers import wait_for

from .conftest import BUCKET
from .nodes import put_all
from .proxy import Proxy

BIG = bytes(range(256)) * (12 << 10)  # 3 MiB: several of the transport's blocks
OBJECTS = {"small.txt": b"a small document\n", "big.bin": BIG}


def documents(client: Client) -> dict[str, dict] | None:
    docs = client.get("/documents?limit=100").json["documents"]
    by_name = {d["origin_uri"].rsplit("/", 1)[1]: d for d in docs}
    return by_name if set(by_name) == set(OBJECTS) else None


def test_content_streams_from_s3_and_a_failing_blob_store_is_a_503(cluster):
    moto = cluster.moto
    proxy = Proxy("127.0.0.1", int(moto.url.rsplit(":", 1)[1]))  # the blob store's endpoint, to close
    try:
        put_all(moto, OBJECTS)
        cluster.http = True
        cluster.blob_urls["a"] = f"http://127.0.0.1:{proxy.port}"
        cluster.start("a")
        client = Client(cluster.instances["a"].base_url, timeout=120)
        docs = wait_for(lambda: documents(client), timeout=120, message="both objects to be documents")
        path = f"/documents/{docs['big.bin']['doc_id']}/content"

        got = client.get(path)
        assert (got.status, hashlib.sha256(got.data).hexdigest()) == (200, hashlib.sha256(BIG).hexdigest())
        assert got.headers["Content-Length"] == str(len(BIG))
        etag = got.headers["ETag"]
        assert client.get(path, headers={"If-None-Match": etag}).status == 304
        start, end = (1 << 20) - 7, (2 << 20) + 11  # across block boundaries
        part = client.get(path, headers={"Range": f"bytes={start}-{end}"})
        assert (part.status, part.data) == (206, BIG[start:end + 1])

        def failing(req):  # the blob store answers 500 to everything (after botocore's retries)
            if req.bucket == BUCKET:
                return s3_error("500 Internal Server Error", "InternalError", "We encountered an internal error",
                                "req-500")
            return None

        moto.log.hooks.append(failing)
        unavailable(client.get(path))
        moto.log.hooks.remove(failing)
        assert client.get(path).data == BIG  # retrying works once the store is back

        small = docs["small.txt"]
        moto.s3.delete_object(Bucket=BUCKET, Key=f"store/blobs/sha256/{small['sha256'][:2]}/{small['sha256']}")
        client.get(f"/documents/{small['doc_id']}/content").error(404, "content_missing")

        proxy.close()  # the endpoint is down: connections refused
        unavailable(client.get(path))
        assert client.get("/healthz").status == 200  # the instance itself carries on
        assert any(e.get("event") == "blob store unavailable" for e in cluster.instances["a"].log_events())
        assert "cluster-test-secret" not in cluster.instances["a"].log_text()
    finally:
        proxy.close()


def unavailable(r) -> None:
    r.error(503, "blob_store_unavailable")
    assert r.headers["Retry-After"] == "5"
    assert "Traceback" not in r.data.decode() and "127.0.0.1" not in r.json["message"]
