"""What a SharePoint edit that leaves the bytes alone looks like to a consumer of the
daemon's API (issue 19: a column-only edit is a metadata version, a permission-only one a
permissions version and `acl_changed`, neither downloading anything), with README's
consumer following the feed through both."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.store.catalogue import doc_id_for
from tests.integration.test_api_support import Client, trigger, wait_job
from tests.integration.test_readme_consumer import readme_consumer
from tests.support.helpers import wait_for
from tests.support.procs import Daemon


def with_api(sp) -> Path:
    """The source's config with the HTTP API on a free port."""
    path = sp.root / "daemon.toml"
    path.write_text(sp.config.read_text().replace("[credentials]", '[http]\nlisten = "127.0.0.1:0"\n[credentials]'))
    return path


@pytest.fixture
def daemon(sp, tmp_path):
    report = sp.drive.add("Reports/q3.docx", b"PK q3 report")
    sp.drive.add("Reports/q4.docx", b"PK q4 report")
    sp.write(columns=["Department"], permissions=True)
    d = Daemon(with_api(sp), sp.state, tmp_path).start()
    client = Client(d.base_url)
    try:
        wait_for(lambda: client.get("/jobs?source=docs&status=succeeded").json["jobs"], timeout=60,
                 message="the source's first run (at start)")
        yield d, client, report
        assert d.stop() == 0
    finally:
        client.close()
        d.close()


def run(client) -> dict:
    return wait_job(client, trigger(client, "docs").json["job_id"], timeout=60)


def test_column_and_permission_edits_are_versions_in_the_feed_with_no_download(sp, daemon, tmp_path):
    d, client, item = daemon
    doc_id = doc_id_for("docs", item)
    first = client.get(f"/documents/{doc_id}").json
    since = len(sp.fake.records)

    sp.drive.set_fields("Reports/q3.docx", Department="Audit")
    assert run(client)["status"] == "succeeded"
    sp.drive.share_link("Reports/q3.docx", "view", "users", people=["alex"])
    assert run(client)["status"] == "succeeded"

    assert sp.content_calls(since) == [] and sp.downloads(since) == []  # Graph's log: no byte asked for
    changes = client.get("/changes").json["changes"]
    mine = [(c["type"], c["version"], c["sha256"]) for c in changes if c["doc_id"] == doc_id]
    assert mine == [("stored", 1, first["sha256"]), ("updated", 2, first["sha256"]),
                    ("acl_changed", 3, first["sha256"])]
    assert [c["type"] for c in changes if c["doc_id"] != doc_id] == ["stored"]
    doc = client.get(f"/documents/{doc_id}").json
    assert (doc["version"], doc["kind"], doc["metadata"]["columns"]) == (3, "permissions", {"Department": "Audit"})
    [link] = [e for e in doc["metadata"]["permissions"]["entries"] if "link" in e]
    assert link["link"]["scope"] == "users" and [p["email"] for p in link["granted_to"]] == ["alex@contoso.com"]
    secret = [g for g in sp.drive.nodes[item].grants if "link" in g][0]
    for answer in (json.dumps(doc), json.dumps(changes)):  # the link's URL is a credential
        assert secret["link"]["webUrl"] not in answer and secret["shareId"] not in answer
    columns, content = doc["versions"]  # history kept, newest first, each as it was
    assert (columns["version"], columns["kind"], columns["metadata"]["columns"]) == (2, "metadata",
                                                                                   {"Department": "Audit"})
    assert columns["metadata"]["permissions"] == first["metadata"]["permissions"]
    assert (content["kind"], content["metadata"]) == ("content", first["metadata"])
    for version in (1, 2, 3):
        body = client.get(f"/documents/{doc_id}/content?version={version}")
        assert body.status == 200 and body.data == b"PK q3 report"

    work = tmp_path / "consumer"  # README's consumer, started after both changes: it skips acl_changed
    work.mkdir()
    (work / "consumer.py").write_text(readme_consumer())
    consumer = subprocess.Popen([sys.executable, "consumer.py"], cwd=work, stderr=subprocess.PIPE,
                                env={"PATH": "/usr/bin:/bin", "INGESTD_API": d.base_url})
    try:
        head = client.get("/changes").json["next_after"]

        def caught_up():
            assert consumer.poll() is None, consumer.stderr.read().decode(errors="replace")
            cursor = work / "mirror.cursor"
            return cursor.exists() and cursor.read_text() == head

        wait_for(caught_up, timeout=60, interval=0.1, message="README's consumer to reach the feed's head")
        mirrored = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "mirror").iterdir()}
        live = {x["doc_id"]: x["sha256"] for x in client.get("/documents").json["documents"]}
        assert mirrored == live and len(live) == 2
    finally:
        consumer.kill()
        consumer.wait(10)
