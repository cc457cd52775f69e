"""Fuzzing the running daemon from its own /openapi.json with schemathesis: valid and
invalid requests to every operation; no 5xx, and every response matches the document
(status documented, content type, body schema, headers, auth enforced).

`make test` runs a few hundred cases with a fixed seed; set INGESTD_FUZZ_EXAMPLES=5000
for a long, randomised run. schemathesis's pytest plugin does not work with pytest 9
(it fails in its lazy fixture), so its strategies are driven with plain Hypothesis.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi import from_dict

from ingestd._lib.paths import file_uri
from tests.integration.test_api_support import api_setup, doc_ids, wait_taken  # noqa: F401 (fixture)

EXAMPLES = int(os.environ.get("INGESTD_FUZZ_EXAMPLES", "0"))


def test_fuzz_every_operation_from_the_openapi_document(api_setup):
    setup = api_setup.write(token=True)
    d = setup.start(setup.daemon())
    client = setup.client(d)
    for i in range(3):
        (setup.inbox / f"fuzz-{i}.txt").write_bytes(b"fuzz %d\n" % i)
    wait_taken(setup, client)
    job_ids = [j["job_id"] for j in client.get("/jobs").json["jobs"]]
    docs = doc_ids(setup.state)
    assert job_ids and file_uri(setup.inbox / "fuzz-0.txt") in docs

    # the token goes in through schemathesis's own auth config, so its "no credentials"
    # cases really go without and must come back 401
    # a schema-valid change cursor may still be gone (410 cursor_expired: one from another
    # store, or older than the retention), and a valid version number may not exist (404)
    config = SchemathesisConfig.from_dict({
        "auth": {"openapi": {"bearerAuth": {"bearer": setup.token}}},
        "checks": {"positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]}}})
    schema = from_dict(client.get("/openapi.json").json, config=config)
    def pinned(path: str, method: str, values: list[str], key: str):
        """Requests aimed at things that exist, not only at random ids."""
        op = schema[path][method]
        if key == "query":
            return st.sampled_from(values).flatmap(
                lambda v: op.as_strategy(query={"source": "inbox", "before": v}))
        return st.sampled_from(values).flatmap(lambda v: op.as_strategy(path_parameters={key: v}))

    known = [
        pinned("/documents/{doc_id}/content", "GET", list(docs.values()), "doc_id"),
        schema["/changes"]["GET"].as_strategy(query={"wait": 0}),  # a held long-poll would only slow the run
        pinned("/ingest/{job_id}", "GET", job_ids, "job_id"),
        pinned("/ingest/{job_id}/items", "GET", job_ids, "job_id"),
        pinned("/documents/{doc_id}", "GET", list(docs.values()), "doc_id"),
        pinned("/jobs", "GET", job_ids, "query"),
        schema["/ingest"]["POST"].as_strategy(body={"source": "inbox"}),
    ]
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE),
                      *known)
    seen: Counter = Counter()

    @given(case=cases)
    @settings(max_examples=EXAMPLES or 300, deadline=None, database=None, derandomize=not EXAMPLES,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call_and_validate(base_url=d.base_url)
        assert response.status_code < 500, (case.method, case.formatted_path, response.status_code)
        seen[case.operation.label, response.status_code // 100] += 1

    fuzz()
    operations = {label for label, _ in seen}
    assert len(operations) == 14, seen  # every operation was reached
    assert seen["GET /ingest/{job_id}", 2] and seen["GET /documents/{doc_id}", 2] and seen["POST /ingest", 2]
    assert seen["GET /documents/{doc_id}/content", 2] and seen["GET /changes", 2] and seen["GET /documents", 2]
    assert seen["GET /ingest/{job_id}/items", 2]
    assert seen["GET /jobs", 4] and seen["POST /ingest", 4]
    assert d.stop() == 0
    log = d.log_text()
    assert "request failed" not in log and "Traceback" not in log
