"""`check-config` for SharePoint sources: dead ACS credentials refused with the fix named,
certificates near or past expiry, missing fields, a bad ca_bundle; and the options."""

import pytest
from pydantic import ValidationError

from ingestd import app as app_mod
from ingestd.app import load_config
from ingestd.plugin import CredentialStatus
from ingestd.plugin.manager import Plugins
from ingestd_sharepoint.options import SharePointOptions
from tests.fakegraph import make_client_cert
from tests.support.helpers import run_cli


def problems(sp) -> list[str]:
    plugins = Plugins().load()
    return app_mod.check(load_config(sp.config, plugins), plugins)


def test_a_good_config_checks_clean(sp):
    assert problems(sp) == []
    result = run_cli("check-config", "--config", sp.config)
    assert result.returncode == 0 and result.stdout.strip() == "ok"


def test_acs_app_only_credentials_are_refused_with_the_fix_named(sp):
    sp.credentials["sp"] = {"type": "sharepoint_acs", "client_id": "acs-client", "client_secret": "acs-secret-value"}
    sp.write()
    result = run_cli("check-config", "--config", sp.config)
    assert result.returncode == 78
    assert "switched off on 2026-04-02" in result.stderr
    assert "azure_client_secret" in result.stderr and "azure_certificate" in result.stderr
    assert "Sites.Selected" in result.stderr and "acs-secret-value" not in result.stderr + result.stdout
    sp.credentials["sp"]["type"] = "sharepoint_app_only"
    sp.write()
    assert any("Azure ACS app-only" in p for p in problems(sp))


def test_an_acs_realm_gives_it_away_whatever_the_type(sp):
    sp.credentials["sp"]["realm"] = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
    sp.write()
    assert any("Azure ACS app-only" in p for p in problems(sp))


def test_other_types_and_missing_fields(sp):
    sp.credentials["sp"] = {"type": "aws", "access_key_id": "AKIA"}
    sp.write()
    assert any("does not work with SharePoint" in p for p in problems(sp))
    sp.credentials["sp"] = {"type": "azure_client_secret", "tenant_id": "t", "client_id": "c"}
    sp.write()
    assert any("missing client_secret" in p for p in problems(sp))


@pytest.mark.parametrize("days, expected", [(10, "warning: certificate expires"), (-1, "certificate expired on"),
                                            (200, None)])
def test_certificate_expiry(sp, tmp_path, days, expected):
    cert = make_client_cert(days_valid=days)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.combined())
    sp.credentials["sp"] = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": "c",
                            "certificate": str(pem)}
    sp.write()
    found = problems(sp)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0] and 'sources "docs"' in found[0]


def test_certificate_problems_are_explained(sp, tmp_path):
    cert, other = make_client_cert(password="right"), make_client_cert()
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.combined())
    base = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": "c", "certificate": str(pem)}
    cases = [
        ({}, "set password"),
        ({"password": "wrong"}, "wrong password"),
        ({"certificate": str(tmp_path / "missing.pem")}, "does not exist"),
        ({"certificate": other.cert_pem.decode(), "private_key": cert.key_pem.decode(), "password": "right"},
         "does not belong to the certificate"),
    ]
    for fields, expected in cases:
        sp.credentials["sp"] = {**base, **fields}
        sp.write()
        found = problems(sp)
        assert any(expected in p for p in found), (fields, found)


def test_expired_certificate_fails_a_job_before_any_request(sp, tmp_path):
    cert = make_client_cert(days_valid=-3)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.combined())
    sp.credentials["sp"] = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": "c",
                            "certificate": str(pem)}
    sp.write()
    m = sp.run()
    assert m.status == "failed" and m.errors[0].code == "auth" and "expired" in m.errors[0].message
    assert sp.fake.records == []


def test_bad_ca_bundle_is_reported(sp, tmp_path):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    sp.write(ca_bundle=str(not_pem))
    assert any("holds no PEM certificate" in p for p in problems(sp))


def test_options_validate_without_the_network():
    ok = SharePointOptions.model_validate({"site_url": "https://contoso.sharepoint.com/sites/legal/",
                                           "credentials": "sp", "folder": "/Contracts//2024/", "every": "5m"})
    assert ok.site_url == "https://contoso.sharepoint.com/sites/legal" and ok.folder == "Contracts/2024"
    assert (ok.library, ok.graph_url, ok.authority_url) == ("Documents", "https://graph.microsoft.com",
                                                            "https://login.microsoftonline.com")
    assert ok.on_delete == "tombstone" and ok.include == ["**"] and ok.timeout == 60.0 and ok.concurrency == 4
    bad = [
        {"site_url": "http://contoso.sharepoint.com/sites/x"},
        {"graph_url": "http://127.0.0.1:8080"},
        {"folder": "../escape"},
        {"every": "5m", "cron": "*/5 * * * *"},
        {"timeout": "0.5s"},
        {"max_file_size": 0},
        {"concurrency": 0},
        {"concurrency": 33},
        {"secret": "inline"},
    ]
    for extra in bad:
        with pytest.raises(ValidationError):
            SharePointOptions.model_validate({"site_url": "https://contoso.sharepoint.com/sites/x",
                                              "credentials": "sp", **extra})


BLOCKED = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("office365", "msal", "requests", "urllib3", "cryptography"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
import ingestd_sharepoint
from ingestd_sharepoint.connector import SharePointConnector
opts = SharePointConnector.Options.model_validate({"site_url": "https://c.sharepoint.com/sites/x", "credentials": "sp"})
assert opts.library == "Documents"
assert not [m for m in sys.modules if m.split(".")[0] in ("office365", "msal", "requests")]
print("importable")
"""


def test_the_package_and_its_options_need_none_of_the_sharepoint_extra():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "importable", result.stderr


def test_check_config_prints_an_expiry_warning_but_passes(sp, tmp_path):
    cert = make_client_cert(days_valid=10)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.combined())
    sp.credentials["sp"] = {"type": "azure_certificate", "tenant_id": sp.fake.tenant, "client_id": "c",
                            "certificate": str(pem)}
    sp.write()
    result = run_cli("check-config", "--config", sp.config)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert "warning: certificate expires" in result.stderr


def test_a_certificate_inside_its_expiry_warning_still_syncs_and_says_so(sp):
    """Issue 19 item 0: the 30-day warning must not fail the job (it did, as `auth`)."""
    import json

    cert = make_client_cert(days_valid=7)
    sp.use_certificate(cert)
    item = sp.drive.add("a.txt", b"a")

    result = sp.cli_plain()
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    warned = [e for e in lines if e.get("event") == "sharepoint credential"]
    assert len(warned) == 1 and warned[0]["level"] == "warning" and warned[0]["credential"] == "sp"
    assert "days left" in warned[0]["problem"] and not warned[0]["problem"].startswith("credential")
    assert sp.doc(item).sha256 is not None and [r.status for r in sp.fake.of_kind("token")] == [200]

    connector = sp.app().connector("docs")
    assert connector.credential_expiry() == cert.cert.not_valid_after_utc  # for /sources and a metric
    status = connector.credential_status()  # what core shows on /sources and exports
    assert status.expires_at == cert.cert.not_valid_after_utc.timestamp()
    assert len(status.warnings) == 1 and "days left" in status.warnings[0]
    assert not status.warnings[0].startswith("credential")


def test_credential_expiry_is_unknown_for_a_client_secret(sp):
    assert sp.app().connector("docs").credential_expiry() is None
    assert sp.app().connector("docs").credential_status() == CredentialStatus()
