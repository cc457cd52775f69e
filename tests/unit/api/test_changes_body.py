"""`GET /changes` sends the JSON SQLite writes for each change: it must say exactly what
its published model says, and scrub secrets as every other answer does."""

import json

from ingestd._lib import redact
from ingestd.api.models import ChangesResponse
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from ingestd.store.feed import FIELDS


def feed_of(tmp_path, *origins: str):
    store = Store(tmp_path / "state")
    blob = Blob("a" * 64, 12, "text/plain")
    store.commit([Change(doc_id=doc_id_for("inbox", o), source="inbox", origin_uri=o, blob=blob,
                         job_id="20261206T100000000000Z-abcdef01") for o in origins])
    return store


def test_the_body_is_what_the_model_publishes_and_what_read_returns(tmp_path):
    store = feed_of(tmp_path, "file:///a.txt", 's3://b/ü "q"\\.txt')
    try:
        body = json.loads(ChangesResponse.encode(store.feed.read_json(None, 10)))
        parsed = ChangesResponse.model_validate(body)
        assert parsed.model_dump(mode="json") == body
        assert [list(c) for c in body["changes"]] == [list(FIELDS)] * 2
        assert body["changes"] == [c.as_dict() for c in store.feed.read(None, 10).changes]
        assert body["changes"][1]["origin_uri"] == 's3://b/ü "q"\\.txt' and body["next_after"] == "0000000000000002"
    finally:
        store.close()


def test_remembered_secrets_are_masked_even_where_json_escapes_them(tmp_path):
    plain, quoted = "sekr3t-Value-For-Test", 'pa"ss\\word-For-Test'
    redact.remember(plain)
    redact.remember(quoted)
    store = feed_of(tmp_path, f"file:///{plain}.txt", f"file:///{quoted}.txt")
    try:
        body = ChangesResponse.encode(store.feed.read_json(None, 10))
    finally:
        store.close()
    text = body.decode()
    assert plain not in text and json.dumps(quoted)[1:-1] not in text and quoted not in text
    assert text.count("***") == 2 and json.loads(text)
