"""`GET /changes` writes its JSON straight from the feed's page: it must say exactly what
its published model says, and scrub secrets as every other answer does."""

import json

from ingestd._lib import redact
from ingestd.api.models import ChangesResponse
from ingestd.store.feed import FIELDS, Page, change


def page(*origins: str) -> Page:
    return Page([change(n, ("stored", f"{n:032x}", "inbox", origin, 1, "a" * 64, 12, "text/plain",
                            "20261206T100000000000Z-abcdef01", "2026-12-06T10:00:00.000Z"))
                 for n, origin in enumerate(origins, 1)], f"{len(origins):016d}")


def test_the_body_is_what_the_model_publishes():
    body = json.loads(ChangesResponse.encode(page("file:///a.txt", "s3://b/ü \"q\".txt")))
    parsed = ChangesResponse.model_validate(body)
    assert parsed.model_dump(mode="json") == body
    assert list(body["changes"][0]) == list(FIELDS) == list(ChangesResponse.model_fields["changes"].annotation
                                                            .__args__[0].model_fields)
    assert body["changes"][1]["origin_uri"] == 's3://b/ü "q".txt' and body["next_after"] == "0000000000000002"


def test_remembered_secrets_are_masked():
    secret = "sekr3t-Value-For-Test"
    redact.remember(secret)
    body = ChangesResponse.encode(page(f"file:///{secret}.txt"))
    assert secret.encode() not in body and b"***" in body
