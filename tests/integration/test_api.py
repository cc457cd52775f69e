"""Contract tests of the status API over real HTTP against a running daemon process.

One daemon serves most tests of this module (starting one costs about a second); tests
that need a token, an audit hook or a broken config start their own.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import time
from datetime import datetime

import pytest
from openapi_spec_validator import validate as validate_spec

from ingestd._lib.paths import file_uri
from tests.support.helpers import run_cli, wait_for, write_config
from tests.integration.test_api_support import (  # noqa: F401 (api_setup is a fixture)
    JSON_TYPE, Client, Setup, api_setup, doc_ids, read_all, read_response, trigger, wait_job, wait_taken,
)

TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd", "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252Fetc%252Fpasswd", "%2Fetc%2Fpasswd", "..%5C..%5Cwindows", "abcdefgh%00", "%00",
    "abcdefgh%00.json", "..%2Fplanted-job", "planted-job%2F..%2F..%2Fplanted-job", "a" * 65, "a" * 5000,
    "%C0%AE%C0%AE%2F", "%ff%fe", "abc", "abcdefg.", "abcdefgh.json", "~root", "%20abcdefgh",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A daemon with the inbox, a holdable scheduled source, a source missing its
    dependency and a disabled one; no token."""
    setup = Setup(tmp_path_factory.mktemp("api")).write(plugins=True)
    try:
        d = setup.start(setup.daemon(plugins=True))
        client = setup.client(d)
        wait_for(lambda: client.get("/jobs?source=fx&status=succeeded").json["jobs"], timeout=20,
                 message="the scheduled source's first run")
        yield setup, d, client
        client.close()
        assert d.stop() == 0
    finally:
        setup.close()



def ingest(setup: Setup, client: Client, files: dict[str, bytes]) -> dict:
    """Drop files and let the watcher take them; returns the source's newest job after."""
    for name, data in files.items():
        (setup.inbox / name).write_bytes(data)
    wait_taken(setup, client)
    return client.get("/jobs?source=inbox&limit=1").json["jobs"][0]


# -- /healthz ---------------------------------------------------------------------------


def test_healthz_reports_every_check(api):
    _, d, client = api
    r = client.get("/healthz")
    assert r.status == 200 and r.headers["Content-Type"] == JSON_TYPE
    body = r.json
    assert body["status"] == "ok" and body["failing"] == [] and body["uptime_s"] >= 0
    assert body["version"] and set(body["checks"]) >= {"workers", "scheduler", "watchers", "settle_loop"}
    assert body["checks"]["watchers"]["sources"]["inbox"]["alive"] is True
    assert r.headers["Server"] == "ingestd" and r.headers["Cache-Control"] == "no-store"
    assert "error" not in body and "message" not in body  # issue 15 #8: no `"error": null` when healthy


# -- POST /ingest -----------------------------------------------------------------------


def test_post_ingest_queues_a_job_and_points_at_it(api):
    _, _, client = api
    r = trigger(client, "inbox")
    body = r.json
    assert body["status"] == "queued" and body["trigger"] == "api" and body["source"] == "inbox"
    assert body["kind"] == "local" and body["started_at"] is None and body["duration_s"] is None
    assert r.headers["Location"] == f"/ingest/{body['job_id']}" == body["links"]["self"]
    final = wait_job(client, body["job_id"])
    assert final["status"] == "succeeded" and final["finished_at"] and final["duration_s"] >= 0
    assert set(final) >= {"job_id", "source", "kind", "trigger", "status", "created_at", "started_at",
                          "finished_at", "duration_s", "counters", "errors", "links"}


def test_post_ingest_unknown_and_disabled_sources(api):
    _, _, client = api
    assert "no source named" in client.post("/ingest", {"source": "nosuch"}).error(404, "unknown_source")["message"]
    client.post("/ingest", {"source": "off"}).error(409, "source_disabled")


def test_post_ingest_while_busy_names_the_running_job(api):
    setup, _, client = api
    setup.hold.write_text("")
    try:
        first = client.post("/ingest", {"source": "fx"})
        assert first.status == 202, first.data
        job_id = first.json["job_id"]
        wait_for(lambda: client.get(f"/ingest/{job_id}").json["status"] == "running", message="fx running")
        busy = client.post("/ingest", {"source": "fx"}).error(409, "busy")
        assert busy["job_id"] == job_id and busy["status"] == "running" and job_id in busy["message"]
        assert busy["links"]["self"] == f"/ingest/{job_id}"
    finally:
        setup.hold.unlink()
    assert wait_job(client, job_id)["status"] == "succeeded"
    again = trigger(client, "fx")
    assert again.json["job_id"] != job_id
    wait_job(client, again.json["job_id"])


def test_post_ingest_connector_unavailable_names_the_remedy(api):
    _, _, client = api
    body = client.post("/ingest", {"source": "needy"}).error(503, "connector_unavailable")
    assert "pip install 'ingestd[needy]'" in body["remediation"] and "needy" in body["message"]


@pytest.mark.parametrize("body, code", [
    (b'{"source": "inbox"', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"source": NaN}', "invalid_json"),
    (b"\xff\xfe{}", "invalid_json"),
    (b"[" * 2000 + b"]" * 2000, "invalid_json"),
    (b'{"source": 1}', "invalid_body"),
    (b'{"source": ["inbox"]}', "invalid_body"),
    (b'{"source": null}', "invalid_body"),
    (b"[]", "invalid_body"),
    (b'"inbox"', "invalid_body"),
    (b"{}", "invalid_body"),
    (b'{"source": "inbox", "path": "/etc"}', "invalid_body"),
    (b'{"source": "../../etc"}', "invalid_body"),
    (b'{"source": "INBOX"}', "invalid_body"),
])
def test_post_ingest_rejects_malformed_bodies(api, body, code):
    _, _, client = api
    r = client.post("/ingest", body, headers={"Content-Type": "application/json"})
    message = r.error(400, code)["message"]
    assert "/etc" not in message  # the input is not echoed back


def test_post_ingest_body_limits_and_media_type(api):
    _, d, client = api
    big = json.dumps({"source": "x" * 5000}).encode()
    client.post("/ingest", big, headers={"Content-Type": "application/json"}).error(413, "body_too_large")
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"):
        headers = {"Content-Type": ctype} if ctype else {}
        client.post("/ingest", b'{"source": "inbox"}', headers=headers).error(415, "unsupported_media_type")
    client.call("POST", "/ingest", b"", headers={"Content-Type": "application/json",
                                                  "Transfer-Encoding": "chunked"}).error(411, "length_required")
    # a huge declared body is refused at once, without the server waiting for it
    host, port = d.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000000\r\n\r\n{")
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b'"body_too_large"' in reply


# -- GET /ingest/{id}: ids never become paths --------------------------------------------


def test_job_status_errors(api):
    _, _, client = api
    client.get("/ingest/20200101T000000000000Z-00000000").error(404, "not_found")
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%00", "x" * 5000, "short"):
        client.get(f"/ingest/{bad}").error(400, "invalid_id")
        client.get(f"/documents/{bad}").error(400, "invalid_id")


def test_traversal_in_ids_touches_no_file_outside_jobs(api_setup):
    setup = api_setup.write()
    # a planted manifest the traversal ids point at: a server that built a path from the id would serve it
    planted = json.loads(json.dumps({"schema": 1, "job_id": "planted-job", "source": "inbox", "kind": "local",
                                     "trigger": "api", "created_at": "2020-01-01T00:00:00.000Z",
                                     "items_file": "x.items.jsonl"}))
    setup.state.mkdir()
    (setup.state / "planted-job.json").write_text(json.dumps(planted))
    d = setup.start(setup.daemon(audit=True))
    client = setup.client(d)
    assert client.get("/healthz").status == 200
    started = time.time()
    for bad in TRAVERSALS:
        for prefix in ("/ingest/", "/documents/"):
            r = client.get(prefix + bad)
            assert r.status in (400, 404), (bad, r.status)
            assert b"planted" not in r.data and b"root:" not in r.data
            if r.status == 400:
                r.error(400)
    client.get("/ingest/abcdefgh1234").error(404)  # well-formed and unknown: may look in jobs/, nowhere else
    finished = time.time()
    events = [ast.literal_eval(line) for line in setup.audit.read_text().splitlines()]
    assert events, "the audit hook recorded nothing: it is not installed"
    window = [e for e in events if started <= e[0] <= finished]
    jobs_dir = os.path.realpath(setup.state / "jobs")
    inbox = os.path.realpath(setup.inbox)
    outside = [e for e in window
               if not os.path.realpath(e[2]).startswith((jobs_dir + os.sep, inbox))]
    assert outside == [], outside
    assert not [e for e in events if "passwd" in e[2] or "planted" in e[2]]
    assert d.stop() == 0


# -- GET /ingest/{id}/items --------------------------------------------------------------


def test_job_items_list_outcomes_with_document_ids_a_page_at_a_time(api):
    """Issue 15 #3: a job's documents, found without reading logs."""
    setup, d, client = api
    data = setup.root / "fixture-data"
    for name in ("items-a.txt", "items-b.txt", "items-c.txt"):
        (data / name).write_text(f"{name}\n")
    job = wait_job(client, trigger(client, "fx").json["job_id"])
    assert job["counters"]["ingested"] == 3
    ids = doc_ids(setup.state)
    every = client.get(f"/ingest/{job['job_id']}/items?limit=500").json
    assert every["job_id"] == job["job_id"] and every["next_after"] is None and every["links"]["next"] is None
    assert sorted(i["origin_uri"] for i in every["items"]) == [f"fixture://items-{c}.txt" for c in "abc"]
    for item in every["items"]:
        assert item["outcome"] == "ingested" and item["doc_id"] == ids[item["origin_uri"]] and item["error"] is None
        assert item["size"] == 12 and item["mime"] == "text/plain" and len(item["sha256"]) == 64

    seen, url = [], f"/ingest/{job['job_id']}/items?limit=1"
    while url:
        page = client.get(url).json
        assert len(page["items"]) <= 1
        seen += page["items"]
        url = page["links"]["next"]
        if url:
            assert f"after={page['next_after']}" in url
    assert seen == every["items"]

    for bad in ("abc", "-1", "", "1e3", "1" * 19):
        client.get(f"/ingest/{job['job_id']}/items?after={bad}").error(400, "invalid_query")
    past = client.get(f"/ingest/{job['job_id']}/items?after=999999999").json
    assert past["items"] == [] and past["next_after"] is None
    assert client.get(f"/ingest/{job['job_id']}/items?after=1").json["items"] == every["items"][1:]  # the next line on
    client.get("/ingest/20200101T000000000000Z-00000000/items").error(404, "not_found")
    client.get("/ingest/..%2F..%2Fetc/items").error(400, "invalid_id")


def test_job_items_carry_the_error_of_a_skipped_item(api):
    setup, _, client = api
    (setup.inbox / "items-empty.txt").write_bytes(b"")
    uri = file_uri(setup.inbox / "items-empty.txt")

    def listed():
        jobs = client.get("/jobs?source=inbox&limit=10").json["jobs"]
        return [i for j in jobs for i in client.get(f"/ingest/{j['job_id']}/items").json["items"]
                if i["origin_uri"] == uri]

    items = wait_for(listed, timeout=20, message="the empty file's item")
    assert items[0]["outcome"] == "skipped" and items[0]["doc_id"] is None
    assert items[0]["error"]["code"] == "empty" and items[0]["error"]["message"]


def test_cli_status_items_lists_the_jobs_documents(api):
    setup, d, client = api
    job = ingest(setup, client, {"cli-items.txt": b"for the cli\n"})
    uri = file_uri(setup.inbox / "cli-items.txt")
    env = {"PYTHONPATH": d.env["PYTHONPATH"]}  # the config names the test's plugins
    out = run_cli("status", job["job_id"], "--items", "--config", setup.config, env=env)
    assert out.returncode == 0, out.stderr
    assert f"ingested  {doc_ids(setup.state)[uri]}  {uri}" in out.stdout
    as_json = json.loads(run_cli("status", job["job_id"], "--items", "--json", "--config", setup.config,
                                 env=env).stdout)
    assert as_json["job_id"] == job["job_id"]
    assert [i["origin_uri"] for i in as_json["items"]] == [uri] and as_json["items"][0]["outcome"] == "ingested"


# -- GET /jobs --------------------------------------------------------------------------


def test_jobs_are_newest_first_and_paginate_to_the_end(api):
    setup, _, client = api
    for i in range(3):
        ingest(setup, client, {f"page-{i}.txt": f"page {i}\n".encode()})
    everything = client.get("/jobs?limit=500").json
    assert everything["next_before"] is None and everything["links"]["next"] is None
    ids = [j["job_id"] for j in everything["jobs"]]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 5
    seen, url = [], "/jobs?limit=2"
    while url:
        page = client.get(url).json
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        url = page["links"]["next"]
        if url:
            assert page["next_before"] == page["jobs"][-1]["job_id"] and f"before={page['next_before']}" in url
    assert seen == ids
    only = client.get("/jobs?source=inbox&status=succeeded&limit=500").json["jobs"]
    assert only and all(j["source"] == "inbox" and j["status"] == "succeeded" for j in only)
    assert [j["job_id"] for j in only] == [i for i in ids if i in {j["job_id"] for j in only}]
    first = client.get(f"/jobs?source=inbox&limit=1&before={ids[0]}").json
    assert all(j["job_id"] < ids[0] for j in first["jobs"])


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=abc", "limit=", "status=done", "source=..%2Fetc", "source=",
    "before=..%2F..%2Fetc%2Fpasswd", "before=%00", "nosuch=1", "limit=1&limit=2", "source=BIG",
])
def test_jobs_rejects_bad_queries(api, query):
    api[2].get(f"/jobs?{query}").error(400, "invalid_query")


# -- GET /sources -----------------------------------------------------------------------


def test_sources_describe_schedule_availability_and_last_job(api):
    setup, _, client = api
    job = ingest(setup, client, {"for-sources.txt": b"x"})
    assert job["counters"]["ingested"] == 1
    sources = {s["name"]: s for s in client.get("/sources").json["sources"]}
    assert set(sources) == {"inbox", "fx", "needy", "off"}
    inbox = sources["inbox"]
    assert inbox["trigger"] == "watch" and inbox["available"] and inbox["schedule"] is None
    assert inbox["last_job"]["job_id"] == job["job_id"] and inbox["last_job"]["status"] == "succeeded"
    assert inbox["last_job"]["finished_at"] == job["finished_at"]
    fx = sources["fx"]
    assert fx["trigger"] == "schedule" and fx["schedule"] == "every 3600s" and fx["kind"] == "fixture"
    assert fx["next_run_at"] and fx["next_run_at"].endswith("Z")
    needy = sources["needy"]
    assert needy["available"] is False and "pip install" in needy["remediation"] and needy["last_job"] is None
    assert sources["off"]["enabled"] is False
    assert str(setup.inbox) not in json.dumps(sources)  # no server paths
    assert inbox["credential"] == {"warnings": [], "expires_at": None}


def test_a_credential_close_to_expiry_shows_on_sources_and_in_metrics(api):
    """Issue 19 #0: the warning stays visible (not fatal) where operators look."""
    _, _, client = api
    fx = next(s for s in client.get("/sources").json["sources"] if s["name"] == "fx")
    assert fx["credential"]["warnings"] == ["certificate expires in 6 days"]
    expires = datetime.fromisoformat(fx["credential"]["expires_at"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - (time.time() + 6 * 86400)) < 3600
    metrics = client.get("/metrics").data.decode()
    expiry = 'ingestd_credential_expiry_timestamp_seconds{source="fx"}'
    line = next(row for row in metrics.splitlines() if row.startswith(expiry))
    assert abs(float(line.split()[-1]) - expires) < 1
    assert 'ingestd_credential_warnings{source="fx"} 1.0' in metrics
    assert 'ingestd_credential_warnings{source="inbox"} 0.0' in metrics
    assert 'ingestd_credential_expiry_timestamp_seconds{source="inbox"}' not in metrics


# -- GET /documents/{id} ----------------------------------------------------------------


def test_document_record_with_versions_and_no_server_path(api):
    setup, _, client = api
    path = setup.inbox / "versioned.txt"
    ingest(setup, client, {"versioned.txt": b"first version\n"})
    ingest(setup, client, {"versioned.txt": b"second version, longer\n"})
    doc_id = doc_ids(setup.state)[file_uri(path)]
    r = client.get(f"/documents/{doc_id}")
    assert r.status == 200
    doc = r.json
    assert doc["doc_id"] == doc_id and doc["source"] == "inbox" and doc["size"] == len(b"second version, longer\n")
    assert doc["mime"] == "text/plain" and len(doc["versions"]) == 1 and doc["versions"][0]["size"] == 14
    assert doc["links"]["job"] == f"/ingest/{doc['job_id']}"
    assert "blob_path" not in doc and str(setup.state) not in r.data.decode()
    client.get("/documents/0123456789abcdef0123456789abcdef").error(404, "not_found")


# -- /openapi.json ----------------------------------------------------------------------


def test_openapi_document_is_valid_and_lists_every_route(api):
    _, _, client = api
    r = client.get("/openapi.json")
    assert r.status == 200 and r.headers["Content-Type"] == JSON_TYPE
    doc = r.json
    validate_spec(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"] == "3.1.0"
    ops = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    assert ops == {("/healthz", "GET"), ("/ingest", "POST"), ("/ingest/{job_id}", "GET"), ("/jobs", "GET"),
                   ("/ingest/{job_id}/items", "GET"), ("/sources", "GET"), ("/documents", "GET"),
                   ("/documents/{doc_id}", "GET"), ("/documents/{doc_id}/content", "GET"),
                   ("/documents/{doc_id}/text", "GET"), ("/changes", "GET"),
                   ("/throughput", "GET"), ("/metrics", "GET"), ("/openapi.json", "GET")}
    assert set(doc["paths"]["/documents/{doc_id}/text"]["get"]["responses"]) >= {"200", "404", "409", "422"}
    post = doc["paths"]["/ingest"]["post"]
    assert set(post["responses"]) >= {"202", "400", "404", "408", "409", "411", "413", "415", "503"}
    assert "security" not in post  # no token configured: the document says so
    schema = doc["components"]["schemas"]["IngestionStatusResponse"]
    assert set(schema["required"]) >= {"job_id", "status", "counters", "errors", "links"}


def _properties(doc: dict):
    """(schema name, property name, property schema) for every response schema."""
    for name, schema in doc["components"]["schemas"].items():
        for prop, spec in schema.get("properties", {}).items():
            yield name, prop, schema, spec


def test_openapi_is_as_strict_as_the_data(api):
    """Issue 15 #8: timestamps say `format: date-time`; every field a response always
    carries is `required` (JobError.at and every counter included)."""
    _, _, client = api
    doc = client.get("/openapi.json").json
    timestamps, loose = [], []
    for name, prop, schema, spec in _properties(doc):
        if prop == "at" or prop.endswith("_at"):
            branches = spec.get("anyOf", [spec])
            formats = {b.get("format") for b in branches if b.get("type") == "string"}
            timestamps.append((name, prop))
            assert formats == {"date-time"}, (name, prop, spec)
        if prop not in schema.get("required", []):
            loose.append((name, prop))
    assert ("JobError", "at") in timestamps and ("IngestionStatusResponse", "finished_at") in timestamps
    assert ("Version", "ingested_at") in timestamps and ("SourceInfo", "next_run_at") in timestamps
    response_schemas = {n for n in doc["components"]["schemas"] if n not in ("IngestRequest",)}
    assert [x for x in loose if x[0] in response_schemas] == []
    assert set(doc["components"]["schemas"]["Counters"]["required"]) == {
        "discovered", "ingested", "unchanged", "skipped", "failed", "deleted", "filtered", "bytes"}


# -- routing, methods, limits -----------------------------------------------------------


def test_unknown_paths_404_and_wrong_methods_405_with_allow(api):
    _, _, client = api
    for path in ("/nope", "/jobs/", "/ingest/a/b", "/ui/", "/ui/x.js", "/healthz/x", "/JOBS", "/metrics.txt"):
        client.get(path).error(404, "not_found")
    for method, path, allow in (("DELETE", "/jobs", "GET, HEAD"), ("POST", "/healthz", "GET, HEAD"),
                                ("GET", "/ingest", "POST"), ("HEAD", "/ingest", "POST"),
                                ("PUT", "/ingest/abcdefgh", "GET, HEAD"), ("OPTIONS", "/sources", "GET, HEAD"),
                                ("PATCH", "/openapi.json", "GET, HEAD")):
        r = client.call(method, path)
        assert r.status == 405 and r.headers["Allow"] == allow, (method, path, r.status)
        if method != "HEAD":
            r.error(405, "method_not_allowed")


def test_unknown_methods_are_405_with_allow_on_a_kept_connection(api):
    """Issue 15 #5: was 501, `Connection: close`, and an access-log line without path."""
    _, d, client = api
    host, port = d.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"BREW /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = read_response(stream)
        assert head.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD\r\n" in head, head
        assert b"Connection: close" not in head and json.loads(body)["error"] == "method_not_allowed"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the same connection still serves
        assert read_response(stream)[0].startswith(b"HTTP/1.1 200 ")
    client.call("BREW", "/nowhere").error(404, "not_found")
    wait_for(lambda: any(e.get("event") == "http request" and e.get("method") == "BREW" for e in d.log_events()),
             message="the access-log line")
    line = next(e for e in d.log_events() if e.get("event") == "http request" and e.get("method") == "BREW")
    assert line["path"] == "/jobs" and line["status"] == 405 and line["duration_ms"] >= 0


def test_head_is_served_on_every_get_route(api):
    """Issue 15 #4: HEAD answers as GET would, headers only (Content-Length included)."""
    setup, _, client = api
    job_id = client.get("/jobs?limit=1").json["jobs"][0]["job_id"]
    doc_id = next(iter(doc_ids(setup.state).values()), None)
    paths = ["/healthz", "/metrics", "/jobs", "/sources", "/openapi.json", f"/ingest/{job_id}",
             f"/ingest/{job_id}/items", "/ingest/abcdefgh1234"]
    if doc_id:
        paths.append(f"/documents/{doc_id}")
    for path in paths:
        got, head = client.get(path), client.call("HEAD", path)
        assert head.status == got.status and head.data == b"", path
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
        if path in ("/metrics", "/healthz"):  # a scrape and the uptime change between two requests
            assert int(head.headers["Content-Length"]) > 0
        else:
            assert head.headers["Content-Length"] == str(len(got.data)), path


def test_request_line_and_header_limits(api):
    _, d, client = api
    client.get("/ingest/" + "a" * 9000).error(414, "uri_too_long")
    client.get("/jobs", headers={f"X-Filler-{i}": "y" * 1000 for i in range(20)}).error(431, "headers_too_large")
    host, port = d.base_url.removeprefix("http://").split(":")
    for garbage in (b"GARBAGE\r\n\r\n", b"GET /jobs\r\n\r\n", b"GET /jobs HTTP/9.9\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(garbage)
            reply = read_all(sock)
        status = reply.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 4") or status.startswith(b"HTTP/1.1 505"), (garbage, reply)
        assert b"Content-Type: application/json; charset=utf-8" in reply and b"<html" not in reply.lower()
    assert client.get("/healthz").status == 200  # still serving


def test_access_log_lines_carry_method_path_status_duration(api):
    setup, d, client = api
    client.get("/jobs?limit=3")
    client.get("/nope")
    wait_for(lambda: any(e.get("event") == "http request" and e.get("path") == "/nope" for e in d.log_events()),
             message="the access log line")
    lines = [e for e in d.log_events() if e.get("event") == "http request"]
    jobs = next(e for e in lines if e.get("path") == "/jobs")
    assert jobs["method"] == "GET" and jobs["status"] == 200 and jobs["duration_ms"] >= 0
    assert jobs["level"] == "info" and jobs["logger"] == "ingestd.http"
    assert next(e for e in lines if e.get("path") == "/nope")["status"] == 404


# -- auth -------------------------------------------------------------------------------


def test_bearer_token_guards_everything_but_healthz_and_rotates_on_sighup(api_setup):
    setup = api_setup.write(token=True)
    d = setup.start(setup.daemon())
    good = setup.client(d)
    anonymous = setup.client(d, token=None)
    health = anonymous.get("/healthz")
    assert health.status == 200 and health.json["checks"]["watchers"] == {"ok": True}  # no detail without a token
    assert good.get("/healthz").json["checks"]["watchers"]["sources"]["inbox"]["alive"] is True
    for path in ("/jobs", "/sources", "/metrics", "/openapi.json", "/ingest/abcdefgh1234", "/nope"):
        r = anonymous.get(path)
        r.error(401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    anonymous.post("/ingest", {"source": "inbox"}).error(401, "unauthorized")
    wrong = (f"Bearer {setup.token}x", f"Basic {setup.token}", setup.token, "Bearer", f"Bearer {setup.token[:-1]}")
    for header in wrong:
        anonymous.get("/jobs", headers={"Authorization": header}).error(401, "unauthorized")
    assert good.get("/jobs").status == 200 and good.get("/metrics").status == 200
    assert good.get("/jobs", headers={"Authorization": f"bearer {setup.token}"}).status == 200
    doc = good.get("/openapi.json").json
    assert doc["paths"]["/jobs"]["get"]["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []

    old = setup.token
    setup.write(token=True)  # a new token in the same file
    d.signal(signal.SIGHUP)
    wait_for(lambda: setup.client(d).get("/jobs").status == 200, message="the new token to be accepted")
    Client(d.base_url, old).get("/jobs").error(401, "unauthorized")
    assert d.stop() == 0
    log = d.log_text()
    assert old not in log and setup.token not in log and "token file reloaded" in log


def test_non_loopback_listen_without_token_is_refused_with_exit_78(api_setup):
    setup = api_setup.write(listen="0.0.0.0:0")
    check = run_cli("check-config", "--config", setup.config)
    assert check.returncode == 78
    assert "http: listen address '0.0.0.0:0' is not loopback" in check.stderr and "http.token_file" in check.stderr
    d = setup.daemon().start(ready=False)
    assert d.proc.wait(timeout=30) == 78
    assert "http.token_file" in d.log_text() and "Traceback" not in d.log_text()
    setup.token_file.write_text("too-short\n")
    setup.token_file.chmod(0o600)  # a readable-by-others file is refused before its content is looked at
    write_config(setup.config, daemon={"state_dir": "state"},
                 http={"listen": "0.0.0.0:0", "token_file": str(setup.token_file)})
    check = run_cli("check-config", "--config", setup.config)
    assert check.returncode == 78 and "http.token_file" in check.stderr and "at least 16" in check.stderr
