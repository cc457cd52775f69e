"""A private key pasted without its PEM header (issue 14 #9): it was taken for a path, so
`check-config` printed it, and a job's manifest (and `GET /ingest/{id}`) carried it with
`//` folded to `/` by `Path()`, past the masking of the value as written."""

from __future__ import annotations

import json
import re

from tests.fakegraph import make_client_cert
from tests.support.helpers import run_cli


def _headerless_key(cert) -> str:
    body = "".join(line for line in cert.key_pem.decode().splitlines() if not line.startswith("-----"))
    return body[:40] + "//" + body[40:]  # base64 holds `/`; `//` is what Path() folds


def _chunks(secret: str, size: int = 12) -> list[str]:
    return [secret[i:i + size] for i in range(0, len(secret) - size, size)]


def _leaked(secret: str, text: str) -> list[str]:
    flat = re.sub(r"/{2,}", "/", secret)
    return [c for c in _chunks(secret) + _chunks(flat) if c in text]


def test_a_headerless_private_key_never_reaches_any_output(sp, tmp_path):
    cert = make_client_cert()
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.cert_pem)
    key = _headerless_key(cert)
    sp.credentials["sp"] = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": "c",
                            "certificate": str(pem), "private_key": key}
    sp.write()
    check = run_cli("check-config", "--config", sp.config)
    assert check.returncode == 78
    assert "private_key" in check.stderr and "PEM" in check.stderr
    assert not _leaked(key, check.stdout + check.stderr)
    result, manifest = sp.cli()  # refused by the same check, before any job
    assert result.returncode == 78 and manifest is None and not _leaked(key, result.stderr)
    job = sp.run()  # a job started anyway (the daemon's, were the file changed under it)
    assert job.status == "failed" and job.errors[0].code == "auth"
    on_disk = (sp.state / "jobs" / f"{job.job_id}.json").read_text()
    assert not _leaked(key, on_disk + json.dumps(job.to_json()))


def test_graph_access_tokens_are_masked_in_messages(sp):
    """Issue 14, suspected gap confirmed: MSAL tokens were never remembered for masking."""
    from ingestd._lib import redact

    sp.drive.add("a.txt", b"a")
    assert sp.run().status == "succeeded"
    (token,) = sp.fake.tokens
    assert redact.scrub_text(f"Graph refused Bearer {token}") == "Graph refused Bearer ***"
