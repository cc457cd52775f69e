"""Short forms of the hardening campaigns, so they run on every change."""

from tests.campaigns import crash


def test_crash_campaign_short(tmp_path):
    report = crash.run(kills=6, seed=7, workdir=tmp_path, max_delay=0.8)
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["files"] > 50 and report["documents"] == report["files"]
