"""Masking: free text only, every remembered secret, whatever its length, wherever it is cut.

Each test here confirms (or refutes) one of issue 14's suspected redaction gaps, or pins
issue 23 #1: structured records are never rewritten.
"""

from __future__ import annotations

import io
import json

from ingestd._lib import logs, redact
from ingestd.jobs.items import ItemsWriter
from ingestd.jobs.manifest import JobError, Manifest

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def test_a_short_secret_is_masked_as_a_word_not_inside_words():
    """Gap confirmed: values under 6 characters were never remembered."""
    redact.remember("pa55")
    assert redact.scrub_text("password pa55 was refused") == "password *** was refused"
    assert redact.scrub_text("pa55word and spa55") == "pa55word and spa55"


def test_a_secret_cut_short_is_still_masked():
    """Gap confirmed: a message cut at 300 characters after the secret's start leaked its head."""
    redact.remember(SECRET)
    message = ("x" * 290 + " " + SECRET + " tail")[:300]
    assert SECRET[:8] in message
    masked = redact.scrub_text(message)
    assert SECRET[:5] not in masked and masked.endswith("***")


def test_a_secret_with_json_specials_is_masked_before_escaping(tmp_path):
    """Gap confirmed: the items file was scrubbed after JSON escaping, so a secret with
    a quote or backslash came through escaped and unmasked."""
    secret = 'ab"cd\\ef-0123456789'
    redact.remember(secret)
    writer = ItemsWriter(tmp_path / "items.jsonl")
    writer.write({"origin_uri": "file:///x", "outcome": "failed", "error": "auth", "message": f"refused {secret}"})
    writer.close()
    text = (tmp_path / "items.jsonl").read_text()
    assert json.dumps(secret)[1:-1] not in text and secret not in text
    assert json.loads(text)["message"] == "refused ***"


def test_a_secret_folded_by_path_is_still_masked():
    """`Path()` folds `//`: a key quoted as a path must not escape masking."""
    key = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC//BKcwggSjAgEAAoIBAQC7"
    redact.remember(key)
    assert "BKcwggSj" not in redact.scrub_text(f"cannot read {key.replace('//', '/')}")


def test_records_are_never_rewritten(tmp_path):
    """Only free text (`message`) is masked; names, ids, origins and outcomes stay as written."""
    redact.remember("reports-secret-value")
    redact.remember("ingest")  # even a short ordinary word a misconfigured plugin registered
    manifest = Manifest(job_id="20260101T000000000000Z-abcdef01", source="ingest", kind="s3", trigger="cli",
                        created_at="2026-01-01T00:00:00.000Z", items_file="x.items.jsonl")
    manifest.add_error(JobError(code="auth", message="refused reports-secret-value", item="s3://ingest/a"))
    data = manifest.to_json()
    assert data["source"] == "ingest" and data["errors"][0]["item"] == "s3://ingest/a"
    assert data["errors"][0]["message"] == "refused ***"
    assert manifest.errors[0].message == "refused ***"  # memory, disk and API say the same
    writer = ItemsWriter(tmp_path / "items.jsonl")
    writer.write({"origin_uri": "s3://ingest/ingested.txt", "doc_id": "d", "outcome": "ingested"})
    writer.close()
    assert json.loads((tmp_path / "items.jsonl").read_text())["outcome"] == "ingested"


def test_log_lines_mask_free_text_but_keep_ids_and_provenance():
    redact.remember("hunter2-very-secret")
    redact.remember("inbox")
    stream = io.StringIO()
    logs.setup(level="info", fmt="json", stream=stream)
    logs.get("t").info("document stored", source="inbox", origin_uri="file:///srv/inbox/a", job_id="j-inbox",
                       error="refused hunter2-very-secret by inbox")
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["source"] == "inbox" and line["origin_uri"] == "file:///srv/inbox/a" and line["job_id"] == "j-inbox"
    assert line["error"] == "refused *** by ***"


def test_rotating_values_keep_only_the_newest():
    """Tokens that renew every hour are remembered in a slot, so the set stays bounded."""
    for i in range(50):
        redact.remember(f"access-token-number-{i:04d}-xxxxxxxx", slot="graph")
    assert redact.size() <= redact.ROTATING_KEEP
    assert "***" == redact.scrub_text("access-token-number-0049-xxxxxxxx")
