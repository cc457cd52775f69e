"""Authentication: secrets and certificates through MSAL against the fake's token
endpoint, token reuse and refresh, clear failures that never show the secret, and the
CA file every request is verified against."""

import json
import os

import pytest

from ingestd_sharepoint import auth
from tests.conftest import make_secret
from tests.fakegraph import make_client_cert

from .conftest import SECRET

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def everything_written(sp, result) -> str:
    """Every output of a CLI run: stdout, stderr and every file under the state dir."""
    chunks = [result.stdout, result.stderr]
    for path in sp.state.rglob("*"):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_bad_secret_fails_the_job_as_auth_without_showing_the_secret(sp):
    wrong = make_secret("wrong-sp-client")
    sp.credentials["sp"]["client_secret"] = wrong
    sp.write()
    sp.drive.add("a.txt", b"a")
    result, manifest = sp.cli()
    assert result.returncode == 1
    assert manifest["status"] == "failed"
    error = manifest["errors"][0]
    assert error["code"] == "auth"
    assert "authentication failed" in error["message"] and "client secret is wrong" in error["message"]
    assert "AADSTS7000215" in error["message"]
    assert [r.status for r in sp.fake.of_kind("token")] == [401]  # a refusal is final: not asked again

    logged = sp.cli_plain()  # the same run with logs on stderr, as an operator sees it
    assert logged.returncode == 1 and "auth: authentication failed" in logged.stdout
    for run in (result, logged):
        text = everything_written(sp, run)
        assert wrong not in text and SECRET not in text
    assert not sp.fake.graph()  # nothing reached Graph without a token


def test_unknown_tenant_is_an_auth_failure_naming_the_tenant(sp):
    sp.credentials["sp"]["tenant_id"] = "00000000-0000-0000-0000-000000000000"
    sp.write()
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "auth"
    assert "unknown tenant_id" in m.errors[0].message
    assert [r.status for r in sp.fake.of_kind("openid")] == [400] and not sp.fake.of_kind("token")


@pytest.mark.parametrize("layout", ["one file", "separate key"])
def test_certificate_credential_signs_an_assertion_the_fake_verifies(sp, tmp_path, layout):
    password = make_secret("pem")
    cert = make_client_cert(password=password)
    client_id = "2f1a3c55-d1b0-4c31-a7e4-0f6e0e7b8a11"
    sp.fake.add_app(client_id, certificate=cert.cert)
    if layout == "one file":
        pem = tmp_path / "sp-app.pem"
        pem.write_bytes(cert.combined())
        fields = {"certificate": str(pem)}
    else:
        key = tmp_path / "sp-app.key"
        key.write_bytes(cert.key_pem)
        fields = {"certificate": cert.cert_pem.decode(), "private_key": str(key)}
    sp.credentials["sp"] = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": client_id,
                            "password": password, **fields}
    sp.write()
    sp.drive.add("a.txt", b"a")
    m = sp.run()
    assert m.status == "succeeded", m.errors
    assert [r.status for r in sp.fake.of_kind("token")] == [200]


def test_certificate_not_registered_is_refused(sp):
    registered, other = make_client_cert(), make_client_cert()
    sp.use_certificate(other, registered=registered, client_id="2f1a3c55-d1b0-4c31-a7e4-0f6e0e7b8a12")
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "auth"
    assert "certificate is not registered" in m.errors[0].message
    assert [r.status for r in sp.fake.of_kind("token")] == [401]


def test_a_rejected_token_is_replaced_once_and_the_job_carries_on(sp):
    for i in range(4):
        sp.drive.add(f"f{i}.txt", f"{i}".encode())
    sp.fake.revoke_after = 3  # Graph starts refusing every issued token mid-job
    m = sp.run()
    assert m.status == "succeeded", m.errors
    graph = sp.fake.graph()
    refused = [i for i, r in enumerate(graph) if r.status == 401]
    assert len(refused) == 1
    retry = graph[refused[0] + 1]
    assert retry.status == 200 and retry.path == graph[refused[0]].path
    assert retry.token != graph[refused[0]].token
    assert len(sp.fake.of_kind("token")) == 2


def test_tokens_are_reused_across_jobs(sp):
    sp.drive.add("a.txt", b"a")
    sp.run()
    sp.drive.add("b.txt", b"b")
    assert sp.run().counters.ingested == 1
    assert len(sp.fake.of_kind("token")) == 1
    assert len({r.token for r in sp.fake.graph()}) == 1


def test_a_token_is_renewed_shortly_before_it_expires(sp, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    sp.fake.token_lifetime = 3600
    cred = sp.app().registry.resolve("sp")
    tokens = auth.TokenSource(cred, authority_url=sp.fake.base_url, graph_url=sp.fake.base_url,
                              trust=_trust(sp), timeout=(5, 30), user_agent="test")
    try:
        first = tokens.token()
        clock[0] += 3600 - auth.REFRESH_MARGIN - 1
        assert tokens.token() == first
        assert len(sp.fake.of_kind("token")) == 1
        clock[0] += 2  # inside the margin: a new one from the endpoint, though the old one still works
        second = tokens.token()
        assert second != first and len(sp.fake.of_kind("token")) == 2
        tokens.invalidate(rejected=first)  # a late refusal of the old token changes nothing
        assert tokens.token() == second and len(sp.fake.of_kind("token")) == 2
    finally:
        tokens.close()


def _trust(sp) -> str:
    from ingestd_sharepoint.trust import trust_file

    return trust_file(sp.ca.cert_path, sp.root)


def test_ca_bundle_is_used_even_when_the_environment_names_another_bundle(sp):
    sp.drive.add("a.txt", b"a")
    env = {"REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE, "CURL_CA_BUNDLE": SYSTEM_BUNDLE, "SSL_CERT_FILE": SYSTEM_BUNDLE}
    result, manifest = sp.cli(env=env)
    assert result.returncode == 0, manifest
    assert manifest["counters"]["ingested"] == 1
    trust = (sp.state / "sources" / "docs" / "trust.pem").read_bytes()
    assert trust.startswith(open(SYSTEM_BUNDLE, "rb").read().rstrip(b"\n"))  # system CAs kept, test CA added
    assert trust.endswith(sp.ca.cert_path.read_bytes())


def test_without_ca_bundle_a_private_ca_is_refused_with_the_fix_named(sp):
    sp.write(ca_bundle=None)
    env = {"REQUESTS_CA_BUNDLE": str(sp.ca.cert_path), "CURL_CA_BUNDLE": str(sp.ca.cert_path)}
    result, manifest = sp.cli(env=env)  # the environment trusting the CA must not matter
    assert result.returncode == 1
    assert manifest["errors"][0]["code"] == "config" and "ca_bundle" in manifest["errors"][0]["message"]
    assert not sp.fake.of_kind("token")


def test_registry_json_with_the_secret_is_never_copied(sp):
    sp.drive.add("a.txt", b"a")
    sp.run()
    for path in sp.state.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert json.loads(sp.registry.read_text())["sp"]["client_secret"] == SECRET
    assert os.stat(sp.registry).st_mode & 0o077 == 0
