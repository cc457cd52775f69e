"""The short form of the cluster kill campaign (tests/campaigns/cluster_kill.py; its full
form and figures are in docs/reliability.md)."""

from tests.campaigns import cluster_kill


def test_cluster_kill_campaign_short(cluster, tmp_path):
    plan = cluster_kill.Plan(s3_sources=2, objects=60, sp_sources=1, files=30, kill_after=20, seed=7)
    report = cluster_kill.run(plan, tmp_path, cluster=cluster)
    assert report["documents"] == 150 and report["versions"] == 150
    assert report["blobs"] == report["distinct_contents"] < 150  # the shared tenth stored once
    assert report["killed_jobs"] >= 1 and report["interrupted_seen_s"] <= 2 * report["lease_ttl_s"]
    assert report["extra_round_object_gets"] == 0 and report["extra_round_downloads"] == 0
