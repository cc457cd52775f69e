"""Short forms of the hardening campaigns, so they run on every change."""

from tests.campaigns import crash


def test_crash_campaign_short(tmp_path):
    report = crash.run(kills=6, seed=7, workdir=tmp_path, max_delay=0.8)
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["dropped_files"] > 50 and report["objects"] > 5
    assert report["documents"] == report["items"] and report["s3_noop_gets"] == 0


def test_load_campaign_short(tmp_path):
    from tests.campaigns import load

    report = load.run(seconds=0, pollers=20, size=250, workdir=tmp_path, history=40)
    assert report["bursts"] == 2 and report["request_errors"] == 0, report["failures_sample"]
    assert report["history_jobs_listed"] == 40  # the daemon indexed the seeded history and serves it
    assert 2 <= report["jobs"] < 40  # the run counts its own jobs, not the history
    assert report["requests_ok"] > 0 and report["jobs_not_succeeded"] == 0 and report["exit_code"] == 0
    assert "tcache_count=0" in report["daemon_environment"]["GLIBC_TUNABLES"]  # run as the unit runs it


def test_load_memory_verdict_tells_noise_from_growth():
    from tests.campaigns.load import memory_verdict

    sawtooth = [(t * 2.0, 70.0 + 0.4 * (t % 15 == 0)) for t in range(300)]  # a spike every 30 s, no trend
    rising = [(t * 2.0, 70.0 + 0.005 * t) for t in range(300)]  # +0.15 MiB a minute for 10 minutes
    flat = memory_verdict(sawtooth)
    assert flat["rss_flat"] is True and abs(flat["rss_mib_per_minute_second_half"]) < 0.02
    verdict = memory_verdict(rising)
    assert verdict["rss_flat"] is False and verdict["rss_mib_growth"] > 5 * verdict["rss_mib_noise"]
    assert verdict["rss_mib_per_minute_second_half"] == 0.15


def test_churn_campaign_short(tmp_path):
    """The change feed under churn and kills (issue 17): replaying it reproduces GET
    /documents exactly, and a follower across the kills never sees a cursor go back."""
    from tests.campaigns import churn

    report = churn.run(documents=300, kills=2, seed=17, workdir=tmp_path, seconds=8.0)
    assert report["missing"] == 0 and report["extra"] == 0
    assert report["changed"] > 30 and report["deleted"] > 5 and report["live_documents"] > 250
    assert report["changes"] > report["live_documents"]  # edits and deletions are changes too
    assert report["follower_changes"] == report["changes"]


def test_hostile_writers_campaign_short(tmp_path):
    from tests.campaigns import hostile_writers

    report = hostile_writers.run(seconds=6, seed=11, workdir=tmp_path)
    assert report["escapes"] == 0, report["escape_list"]
    assert report["lost"] == 0, report["lost_sample"]
    assert report["swaps_attempted"] >= 20 and report["exit_code"] == 0
    assert {"hardlink", "symlink"} <= set(report["refused"])
