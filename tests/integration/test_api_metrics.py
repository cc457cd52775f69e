"""`GET /metrics` parsed with prometheus_client's own parser, and its numbers checked
against the jobs the daemon actually ran."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from datetime import datetime

import pytest

from prometheus_client.parser import text_string_to_metric_families

from tests.support.helpers import ROOT, wait_for, write_config
from tests.integration.test_api_support import api_setup, trigger, wait_job, wait_taken  # noqa: F401 (fixture)


def scrape(client) -> dict[tuple, float]:
    """(sample name, sorted label items) → value, from a real scrape."""
    r = client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.data.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_match_the_jobs_run(api_setup):
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    client = setup.client(d)
    for i in range(12):
        (setup.inbox / f"doc-{i}.txt").write_bytes(b"metrics %d\n" % i * (i + 1))
    for i in range(2):
        (setup.inbox / f"empty-{i}.txt").write_bytes(b"")  # skipped, code "empty"
    wait_taken(setup, client)
    (setup.inbox / "again.txt").write_bytes(b"metrics 0\n")  # same content as doc-0, new document
    wait_taken(setup, client)
    wait_job(client, trigger(client, "inbox").json["job_id"])

    jobs = client.get("/jobs?limit=500").json["jobs"]
    assert jobs and all(j["status"] in ("succeeded", "partial", "failed") for j in jobs)
    wait_for(lambda: sum(v for (n, _), v in scrape(client).items() if n == "ingestd_jobs_total") == len(jobs),
             message="every finished job to be counted")
    m = scrape(client)

    for status in ("succeeded", "partial", "failed"):
        assert value(m, "ingestd_jobs_total", source="inbox", status=status) == \
            sum(1 for j in jobs if j["status"] == status)
    for outcome in ("ingested", "unchanged", "skipped", "failed", "deleted"):
        assert value(m, "ingestd_items_total", source="inbox", outcome=outcome) == \
            sum(j["counters"][outcome] for j in jobs), outcome
    assert value(m, "ingestd_items_total", source="inbox", outcome="ingested") == 13
    assert value(m, "ingestd_ingested_bytes_total", source="inbox") == sum(j["counters"]["bytes"] for j in jobs)
    assert value(m, "ingestd_item_errors_total", source="inbox", code="empty") == 2

    started = [j for j in jobs if j["started_at"]]
    assert value(m, "ingestd_job_duration_seconds_count", source="inbox") == len(started)
    assert abs(value(m, "ingestd_job_duration_seconds_sum", source="inbox") -
               sum(j["duration_s"] for j in started)) < 1e-6
    assert value(m, "ingestd_job_duration_seconds_bucket", source="inbox", le="+Inf") == len(started)

    last = max(j["finished_at"] for j in jobs if j["status"] == "succeeded")
    expected = datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
    assert abs(value(m, "ingestd_last_success_timestamp_seconds", source="inbox") - expected) < 1e-3

    assert value(m, "ingestd_queue_depth") == 0 and value(m, "ingestd_jobs_running") == 0
    assert value(m, "ingestd_jobs_active", source="inbox", status="running") == 0
    assert value(m, "ingestd_watcher_up", source="inbox", mode="inotify") == 1
    assert value(m, "ingestd_watcher_degraded", source="inbox") == 0
    assert value(m, "ingestd_source_available", source="inbox") == 1
    assert value(m, "ingestd_health_check_ok", check="watchers") == 1
    assert value(m, "ingestd_http_requests_total", route="/jobs", method="GET", status="200") >= 1
    requests = value(m, "ingestd_http_request_duration_seconds_count", route="/jobs", method="GET")
    assert requests >= 1 and value(m, "ingestd_http_request_duration_seconds_bucket", route="/jobs", method="GET",
                                   le="+Inf") == requests
    assert value(m, "ingestd_http_request_duration_seconds_sum", route="/jobs", method="GET") > 0
    assert value(m, "ingestd_start_time_seconds") <= time.time()
    assert value(m, "ingestd_info", version=client.get("/healthz").json["version"]) == 1
    assert value(m, "process_resident_memory_bytes") > 0

    # the last success survives a restart; counters start again from zero
    assert d.stop() == 0
    d = setup.start(d)
    client = setup.client(d)
    m = scrape(client)
    assert abs(value(m, "ingestd_last_success_timestamp_seconds", source="inbox") - expected) < 1e-3
    assert value(m, "ingestd_jobs_total", source="inbox", status="succeeded") == 0
    assert d.stop() == 0


def present(samples, name, **labels) -> bool:
    return (name, tuple(sorted(labels.items()))) in samples


def test_every_source_has_its_series_from_the_start_and_after_a_reload(api_setup):
    """Issue 15 #7: an alert on a source that never succeeded, or on `increase()` of failed
    jobs, needs the series to exist (at 0) before the first event."""
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    client = setup.client(d)
    m = scrape(client)
    for status in ("succeeded", "partial", "failed"):
        assert present(m, "ingestd_jobs_total", source="inbox", status=status), status
        assert value(m, "ingestd_jobs_total", source="inbox", status=status) == 0
    for outcome in ("ingested", "unchanged", "skipped", "failed", "deleted"):
        assert present(m, "ingestd_items_total", source="inbox", outcome=outcome), outcome
    assert present(m, "ingestd_ingested_bytes_total", source="inbox")
    assert present(m, "ingestd_last_success_timestamp_seconds", source="inbox")
    assert value(m, "ingestd_last_success_timestamp_seconds", source="inbox") == 0  # never succeeded
    assert present(m, "ingestd_job_duration_seconds_count", source="inbox")
    assert not any(name == "ingestd_documents_total" for name, _ in m)  # renamed: it counted items

    (setup.root / "late").mkdir()
    write_config(setup.config, daemon={"state_dir": "state", "log_format": "json"}, http={"listen": "127.0.0.1:0"},
                 sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2},
                          {"name": "late", "kind": "local", "path": "late"}])
    d.signal(signal.SIGHUP)
    wait_for(lambda: present(scrape(client), "ingestd_jobs_total", source="late", status="failed"),
             message="the reloaded source's series")
    m = scrape(client)
    assert value(m, "ingestd_last_success_timestamp_seconds", source="late") == 0
    assert present(m, "ingestd_items_total", source="late", outcome="ingested")
    assert d.stop() == 0


RULES = ROOT / "prometheus" / "ingestd.rules.yml"
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed: it comes in Debian's `prometheus` package; "
                    "`.ci/install-promtool` installs just the binary")
def test_the_shipped_alerting_rules_pass_promtool():
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run([PROMTOOL, "test", "rules", "ingestd.rules.test.yml"], cwd=RULES.parent,
                           capture_output=True, text=True, timeout=60)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_the_shipped_alerting_rules_name_only_series_the_daemon_exports(api_setup):
    setup = api_setup.write()
    d = setup.start(setup.daemon())
    text = setup.client(d).get("/metrics").data.decode()
    assert d.stop() == 0
    exported = set()
    for family in text_string_to_metric_families(text):  # families without a sample yet included
        exported |= {family.name, f"{family.name}_total", f"{family.name}_count", f"{family.name}_bucket"}
    named = set(re.findall(r"\b(ingestd_[a-z_]+)\b", RULES.read_text()))
    assert named and named <= exported, sorted(named - exported)
