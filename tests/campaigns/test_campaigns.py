"""Short forms of the hardening campaigns, so they run on every change."""

from tests.campaigns import crash


def test_crash_campaign_short(tmp_path):
    report = crash.run(kills=6, seed=7, workdir=tmp_path, max_delay=0.8)
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["dropped_files"] > 50 and report["objects"] > 5
    assert report["documents"] == report["items"] and report["s3_noop_gets"] == 0


def test_load_campaign_short(tmp_path):
    from tests.campaigns import load

    report = load.run(seconds=0, pollers=20, size=250, workdir=tmp_path)
    assert report["bursts"] == 2 and report["request_errors"] == 0, report["failures_sample"]
    assert report["requests_ok"] > 0 and report["jobs_not_succeeded"] == 0 and report["exit_code"] == 0
    assert "tcache_count=0" in report["daemon_environment"]["GLIBC_TUNABLES"]  # run as the unit runs it
