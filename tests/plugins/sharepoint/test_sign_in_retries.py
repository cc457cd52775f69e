"""Sign-in through outages: the token endpoint (or the OpenID configuration before it)
failing, throttling, resetting or garbling its answer is tried again on the policy
Graph requests follow, honouring Retry-After; a refusal of the credentials is not
retried; a lasting outage fails the job typed; no secret or token reaches the output."""

import threading
import time

import pytest

from ingestd_sharepoint import http as sp_http
from tests.support.helpers import wait_for

from .conftest import SECRET

RETRY_AFTER = 1.0


def inject(fake, fault: str, **kwargs):
    """A status fault ("503") or a damage ("reset") on what `match` takes."""
    if fault.isdigit():
        return fake.fail(int(fault), retry_after=kwargs.pop("retry_after", "0"), **kwargs)
    return fake.damage(fault, **kwargs)


def on(kind: str):
    return lambda rec: rec.kind == kind


@pytest.mark.parametrize("endpoint", ["token", "openid"])
@pytest.mark.parametrize("fault", ["500", "503", "429", "reset", "truncate", "short", "garbage"])
def test_a_sign_in_outage_is_tried_again_and_the_job_runs(sp, quick, endpoint, fault):
    sp.drive.add("a.txt", b"a")
    inject(sp.fake, fault, count=2, match=on(endpoint))

    m = sp.run()

    assert m.status == "succeeded", m.errors
    assert m.counters.ingested == 1
    assert [r.fault for r in sp.fake.of_kind(endpoint)] == [fault, fault, None]


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_sign_in_waits_exactly_retry_after(sp, quick, status):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(status, retry_after="1", match=on("token"))

    m = sp.run()

    assert m.status == "succeeded", m.errors
    refused = sp.fake.of_kind("token")[0]
    following = next(r for r in sp.fake.records if r.started >= refused.ended)  # the next attempt's first request
    gap = following.started - refused.ended
    assert RETRY_AFTER - 0.001 <= gap < RETRY_AFTER + 0.9, gap


@pytest.mark.parametrize("fault, code, attempts", [
    ("503", "throttled", 1 + sp_http.MAX_THROTTLED),
    ("500", "transient", 1 + sp_http.MAX_TRANSIENT),
    ("garbage", "transient", 1 + sp_http.MAX_TRANSIENT),
])
def test_a_lasting_sign_in_outage_fails_the_job_typed_after_the_policys_attempts(sp, quick, fault, code, attempts):
    sp.drive.add("a.txt", b"a")
    inject(sp.fake, fault, count=100, match=on("token"))

    m = sp.run()

    assert m.status == "failed"
    [error] = m.errors
    assert error.code == code and f"gave up after {attempts} attempts" in error.message
    assert "authentication failed" not in error.message and SECRET not in error.message
    assert len(sp.fake.of_kind("token")) == attempts
    assert not sp.fake.graph()


def test_a_refusal_after_an_outage_is_final_at_once(sp, quick):
    sp.credentials["sp"]["client_secret"] = "not-the-secret"
    sp.write()
    sp.fake.fail(503, retry_after="0", match=on("token"))

    m = sp.run()

    assert m.status == "failed" and m.errors[0].code == "auth"
    assert "client secret is wrong" in m.errors[0].message
    assert [r.status for r in sp.fake.of_kind("token")] == [503, 401]  # the refusal is not asked again


def test_a_token_response_cut_short_never_reaches_the_log(sp):
    """MSAL logs an unparsable token response in full, with a traceback; cut short, that
    is most of an access token. Run as a process, so the log is what an operator sees."""
    sp.drive.add("a.txt", b"a")
    sp.fake.damage("short", match=on("token"))

    result, manifest = sp.cli()  # warnings and errors on stderr, as the daemon logs them

    assert result.returncode == 0 and manifest["status"] == "succeeded", result.stderr[-2000:]
    damaged = sp.fake.of_kind("token")[0]
    assert damaged.fault == "short"
    served = damaged.body["access_token"]
    for text in (result.stdout, result.stderr):
        assert served[:24] not in text
        assert "Token response is not in json format" not in text
        assert SECRET not in text


def test_stopping_cuts_a_sign_in_wait_short(sp):
    sp.drive.add("a.txt", b"a")
    sp.fake.fail(429, retry_after="120", match=on("token"))
    app, stop, result = sp.app(), threading.Event(), {}
    job = threading.Thread(target=lambda: result.update(m=app.run_job("docs", "cli", stop=stop)))
    job.start()
    wait_for(lambda: sp.fake.of_kind("token"), timeout=20, message="the throttled sign-in")
    asked = time.monotonic()
    stop.set()
    job.join(20)
    assert not job.is_alive() and time.monotonic() - asked < 5
    assert result["m"].status == "failed" and result["m"].errors[0].code == "interrupted"
    assert len(sp.fake.of_kind("token")) == 1


def test_a_connection_dropped_mid_tls_is_not_taken_for_a_certificate_problem():
    """requests reports a TLS connection reset or cut (seen above, at random, when the
    token endpoint resets) as an SSLError, as it does an untrusted certificate. Only the
    latter is a `config` problem; the former is retried. Built as urllib3 wraps them."""
    import ssl

    import requests
    from urllib3.exceptions import MaxRetryError
    from urllib3.exceptions import SSLError as Urllib3SSLError

    def as_requests_raises(original):
        wrapped = Urllib3SSLError(original)
        return requests.exceptions.SSLError(MaxRetryError(None, "/token", reason=wrapped))

    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")
    untrusted = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert sp_http.dropped_mid_tls(as_requests_raises(eof))
    assert sp_http.dropped_mid_tls(as_requests_raises(ConnectionResetError(104, "Connection reset by peer")))
    assert not sp_http.dropped_mid_tls(as_requests_raises(untrusted))
