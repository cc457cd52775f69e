"""Short form of the remote-fault campaign (the full form: `python -m tests.campaigns.faults`).

Each fault kind is first injected by rule, so its outcome is exact: what retries absorb,
what fails one item, what fails the job, with which typed code, after how many requests;
then a short seeded random campaign runs across both services. Every job is checked by
`Job.check` (typed codes, no traceback, no request storm, nothing stored that the origin
did not hold), every store by `check_store` (blobs hash to their names).
"""

from __future__ import annotations

import pytest

import ingestd_s3.client as s3_client
import ingestd_sharepoint.download as sp_download
import ingestd_sharepoint.http as sp_http
from tests.campaigns import faults
from tests.campaigns.remote import GraphSide, Logs, S3Side, environment, isolate_aws, quick
from tests.fakegraph import make_ca
from tests.plugins.s3.kit import BUCKET, MotoS3

FOREVER = 10_000
S3_ATTEMPTS = s3_client.ATTEMPTS
GRAPH_TRANSIENT = 1 + sp_http.MAX_TRANSIENT
GRAPH_THROTTLED = 1 + sp_http.MAX_THROTTLED


@pytest.fixture(scope="module")
def moto_server():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("faults-ca"))


@pytest.fixture
def logs(tmp_path):
    with environment(isolate_aws(tmp_path)), quick():
        yield Logs()


@pytest.fixture
def s3(tmp_path, moto_server, logs):
    moto_server.reset()
    moto_server.s3.create_bucket(Bucket=BUCKET)
    side = S3Side(tmp_path / "s3", moto_server, logs)
    yield side
    side.close()
    assert not side.proxy.errors, side.proxy.errors
    assert not side.leaks()


@pytest.fixture
def graph(tmp_path, ca, logs):
    side = GraphSide(tmp_path / "sp", ca, logs)
    yield side
    side.close()
    assert not side.proxy.errors, side.proxy.errors


def on_key(key: str):
    return lambda req: req.method == "GET" and req.path == f"/{BUCKET}/{key}"


def is_listing(req) -> bool:
    """A listing request (or the exchange that recorded one)."""
    return "list-type=" in req.target


def gets(job, key: str) -> int:
    return sum(1 for e in job.exchanges if e.method == "GET" and e.path == f"/{BUCKET}/{key}")


def failures(job) -> dict:
    return {e["item"]: e["code"] for e in job.manifest["errors"]}


def heal(side, fetched: int | None = None) -> None:
    """Faults off: one clean run converges (fetching `fetched` objects), the next is a no-op."""
    side.proxy.calm()
    clean = side.run()
    clean.check(allowed=set())
    assert clean.status == "succeeded", clean.manifest
    count = side.fetched(clean)
    if fetched is not None:
        assert count == fetched, f"the clean run fetched {count} objects, expected {fetched}"
    side.check_converged()
    quiet = side.run()
    assert quiet.status == "succeeded"
    assert side.fetched(quiet) == 0


# -- S3 ------------------------------------------------------------------------------------


ABSORBED = ("500", "503", "slowdown", "429", "reset")
BODY = ("stall", "truncate", "short")


def test_s3_status_faults_and_resets_are_absorbed_and_damaged_bodies_fail_only_their_item(s3):
    for kind in ABSORBED + BODY + ("clean",):
        s3.put(f"{kind}.bin", kind.encode() * 40_000)  # 120-320 KB: a stall or cut lands mid-body
    for kind in ABSORBED + BODY:
        s3.proxy.rule(kind, on_key(f"{kind}.bin"))
    s3.proxy.rule("reset", is_listing)

    job = s3.run()
    job.check()

    assert job.status == "partial"
    assert failures(job) == {s3.origin(f"{k}.bin"): "transient" for k in BODY}
    assert job.manifest["counters"]["ingested"] == len(ABSORBED) + 1
    assert sum(1 for e in job.exchanges if is_listing(e)) == 2
    assert {k: gets(job, f"{k}.bin") for k in ABSORBED} == {k: 2 for k in ABSORBED}  # one retry each
    assert {k: gets(job, f"{k}.bin") for k in BODY} == {k: 1 for k in BODY}  # a body is not re-fetched in-job
    assert s3.proxy.injected() == {k: 1 for k in ABSORBED + BODY} | {"reset": 2}
    s3.check_store()
    heal(s3, fetched=len(BODY))


EXHAUSTED = {"slowdown": "throttled", "503": "throttled", "429": "throttled", "500": "transient", "reset": "transient"}


def test_s3_objects_failing_every_attempt_are_retried_exactly_the_policy_then_fail_typed(s3):
    for kind in EXHAUSTED:
        s3.put(f"{kind}.bin", b"x" * 1000)
        s3.proxy.rule(kind, on_key(f"{kind}.bin"), times=FOREVER)
    s3.put("good.bin", b"y" * 1000)
    job = s3.run()
    job.check()
    assert job.status == "partial"
    assert failures(job) == {s3.origin(f"{k}.bin"): code for k, code in EXHAUSTED.items()}
    assert {k: gets(job, f"{k}.bin") for k in EXHAUSTED} == {k: S3_ATTEMPTS for k in EXHAUSTED}
    assert gets(job, "good.bin") == 1
    ids = {e["item"]: e["request_id"] or "" for e in job.manifest["errors"]}
    assert all(ids[s3.origin(f"{k}.bin")].startswith("FAULT-") for k in EXHAUSTED if k != "reset")  # the service's id
    heal(s3, fetched=len(EXHAUSTED))


LISTING = {"slowdown": "throttled", "429": "throttled", "500": "transient", "reset": "transient",
           "truncate": "transient", "short": "transient"}


def test_s3_a_listing_failing_every_attempt_fails_the_job_typed_and_changes_nothing(s3):
    s3.put("a.bin", b"a" * 5000)
    for kind, code in LISTING.items():
        rule = s3.proxy.rule(kind, is_listing, times=FOREVER)
        job = s3.run()
        rule.times = 0
        job.check()
        assert (job.status, list(job.codes)) == ("failed", [code]), kind
        assert len(job.exchanges) == S3_ATTEMPTS and all(is_listing(e) for e in job.exchanges), kind
        assert s3.check_store() == 0
    heal(s3, fetched=1)


def test_s3_a_stalled_download_is_a_transient_remote_failure_not_a_workspace_error(s3):
    """Regression: botocore's ReadTimeoutError is an OSError; it was reported as `io`
    ("workspace: Read timeout…"), sending the operator to look at the disk."""
    s3.put("slow.bin", b"s" * 300_000)
    s3.proxy.rule("stall", on_key("slow.bin"))
    job = s3.run()
    job.check()
    [error] = job.manifest["errors"]
    assert error["code"] == "transient" and "workspace" not in error["message"]
    assert "ReadTimeoutError" in error["message"]
    assert not list((s3.state / "workspace").rglob("*.bin")), "the partial download must not be left behind"
    heal(s3, fetched=1)


# -- SharePoint ----------------------------------------------------------------------------


def graph_path(suffix: str):
    return lambda req: req.path.endswith(suffix)


def download_of(side: GraphSide, item_id: str):
    """The pre-authenticated download of one item (found by its UniqueId)."""
    guid = side.drive.nodes[item_id].guid
    return lambda req: req.path.endswith("/download.aspx") and f"UniqueId={guid}" in req.query


def test_graph_single_faults_anywhere_on_the_data_path_are_absorbed(graph):
    ids = {k: graph.put(f"Folder/{k}.bin", k.encode() * 50_000) for k in ("stall", "truncate", "reset", "500",
                                                                            "503", "429", "plain")}
    rules = [("500", graph_path(":/sites/legal")), ("503", graph_path("/drives")), ("429", graph_path("/root/delta")),
             ("reset", graph_path("/root/delta")), ("truncate", graph_path("/root/delta")),
             ]
    rules += [(k, download_of(graph, ids[k])) for k in ("stall", "truncate", "reset", "500", "503", "429")]
    for kind, match in rules:
        graph.proxy.rule(kind, match)

    job = graph.run()
    job.check()

    assert job.status == "succeeded", job.manifest["errors"]
    assert job.manifest["counters"]["ingested"] == len(ids)
    assert sum(graph.proxy.injected().values()) == len(rules)
    assert "sharepoint download resumed" in job.log  # stall and cut resumed with a Range request
    heal(graph, fetched=0)


def test_graph_a_short_body_is_caught_by_the_size_check_and_never_stored(graph):
    good = graph.put("a.bin", b"a" * 100_000)
    once = graph.put("b.bin", b"b" * 100_000)
    graph.proxy.rule("short", download_of(graph, once))  # the item's second download comes whole
    job = graph.run()
    job.check()
    assert job.status == "succeeded", job.manifest["errors"]
    assert graph.check_store() == 2 and good in graph.truth
    graph.check_converged()

    twice = graph.put("c.bin", b"c" * 100_000)
    graph.proxy.rule("short", download_of(graph, twice), times=2)  # the same short body both times
    job = graph.run()
    job.check()
    assert job.status == "partial"
    assert [(e["code"], "downloaded 50000 bytes" in e["message"]) for e in job.manifest["errors"]] == [
        ("integrity", True)]
    assert graph.check_store() == 2
    heal(graph, fetched=1)


DELTA = {"429": ("throttled", GRAPH_THROTTLED), "503": ("throttled", GRAPH_THROTTLED),
         "500": ("transient", GRAPH_TRANSIENT), "reset": ("transient", GRAPH_TRANSIENT),
         "truncate": ("transient", GRAPH_TRANSIENT)}


def test_graph_a_delta_failing_every_attempt_fails_the_job_typed(graph):
    graph.put("a.bin", b"a" * 5000)
    for kind, (code, sends) in DELTA.items():
        rule = graph.proxy.rule(kind, graph_path("/root/delta"), times=FOREVER)
        job = graph.run()
        rule.times = 0
        job.check()
        assert (job.status, list(job.codes)) == ("failed", [code]), kind
        assert sum(1 for e in job.exchanges if e.path.endswith("/root/delta")) == sends, kind
    heal(graph, fetched=1)


def test_graph_downloads_failing_every_attempt_fail_their_item_only(graph):
    graph.put("good.bin", b"g" * 4000)
    bad = {kind: graph.put(f"{kind}.bin", b"b" * 300_000) for kind in ("500", "reset", "truncate")}
    for kind, item in bad.items():
        graph.proxy.rule(kind, download_of(graph, item), times=FOREVER)
    job = graph.run()
    job.check()
    assert job.status == "partial" and job.codes == {"transient": 3}
    assert job.manifest["counters"]["ingested"] == 1
    sent = graph.proxy.injected()
    # a failing request is sent 1 + MAX_TRANSIENT times; a body cut short is resumed MAX_RESUMES times
    assert sent == {"500": GRAPH_TRANSIENT, "reset": GRAPH_TRANSIENT, "truncate": 1 + sp_download.MAX_RESUMES}
    heal(graph, fetched=3)


def test_graph_a_truncated_delta_page_is_retried_not_a_local_io_error(graph):
    """Regression: a JSON body cut short raised requests' ChunkedEncodingError (an
    OSError), which failed the job as `io` at the first occurrence, without a retry."""
    graph.put("a.bin", b"a" * 5000)
    graph.proxy.rule("truncate", graph_path("/root/delta"))
    job = graph.run()
    job.check()
    assert job.status == "succeeded"
    assert sum(1 for e in job.exchanges if e.path.endswith("/root/delta")) == 2


def test_graph_a_garbled_site_lookup_is_transient_not_io(graph):
    """Regression: the Office 365 client's JSON parsing failure (ClientRequestException,
    an OSError) failed the job as `io` with the parser's message."""
    graph.put("a.bin", b"a")
    graph.proxy.rule("short", graph_path(":/sites/legal"))
    job = graph.run()
    job.check()
    assert job.status == "failed" and list(job.codes) == ["transient"]
    assert "looking up site" in job.manifest["errors"][0]["message"]
    heal(graph, fetched=1)


SIGN_IN = {"500": ("transient", GRAPH_TRANSIENT), "503": ("throttled", GRAPH_THROTTLED),
           "429": ("throttled", GRAPH_THROTTLED), "truncate": ("transient", GRAPH_TRANSIENT),
           "reset": ("transient", GRAPH_TRANSIENT)}


def test_graph_a_sign_in_outage_is_retried_and_never_blamed_on_the_credentials(graph):
    """Regression: Entra answering 5xx or 429, or cutting its answer short, failed the
    job as `auth` ("check tenant_id, client_id and the secret"). One such fault is now
    absorbed by a retry; a lasting one fails the job, typed, after exactly the policy's
    attempts."""
    graph.put("a.bin", b"a")
    for endpoint in ("/oauth2/v2.0/token", "/.well-known/openid-configuration"):
        for kind, (code, sends) in SIGN_IN.items():
            graph.sp.close()  # a fresh app: no cached token, so the job signs in
            graph.proxy.rule(kind, graph_path(endpoint))
            job = graph.run()
            job.check()
            assert job.status == "succeeded", (endpoint, kind, job.manifest["errors"])
            graph.sp.close()
            rule = graph.proxy.rule(kind, graph_path(endpoint), times=FOREVER)
            job = graph.run()
            rule.times = 0
            job.check(allowed={code})
            assert (job.status, list(job.codes)) == ("failed", [code]), (endpoint, kind)
            assert sum(1 for e in job.exchanges if e.path.endswith(endpoint)) == sends, (endpoint, kind)
    heal(graph, fetched=0)


# -- the random campaign, short ------------------------------------------------------------


def test_remote_fault_campaign_short(tmp_path):
    kinds = {"s3": ("500", "503", "slowdown", "429", "reset", "truncate", "short"),
             "sharepoint": ("500", "503", "429", "reset", "truncate", "short")}  # stalls: above, by rule
    report = faults.run(seed=8, requests=200, workdir=tmp_path, kinds=kinds, rates=(0.15, 0.3, 0.6),
                        backoff_scale=0.02, objects=12)
    assert report["corrupt_stored"] == 0 and report["converged_after_one_clean_run"]
    assert report["requests"] >= 200 and sum(report["faults"].values()) >= 20
    assert set(report["faults"]) == set(kinds["s3"]) | set(kinds["sharepoint"])
    assert report["jobs"].get("partial", 0) + report["jobs"].get("failed", 0) > 0
    assert report["items_verified"] > 20
