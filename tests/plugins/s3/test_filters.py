"""include/exclude on a real listing: gitignore's dialect, case-sensitive keys, and the
keys left out counted in the job's counters and log rather than dropped silently."""

from __future__ import annotations

from ingestd_s3.keys import origin_uri

from .kit import BUCKET

KEYS = {
    "in/docs/x.md": b"x", "in/docs/sub/deep.md": b"deep",  # `*` stops at `/`
    "in/a/c.pdf": b"%PDF a", "in/a/b/c.pdf": b"%PDF ab",  # `**` spans zero or more folders
    "in/notes/n.txt": b"n", "in/notes/tmp/t.txt": b"t",  # a pattern naming a folder takes all inside
    "in/tmp": b"a file named tmp", "in/docs/Y.MD": b"case",  # S3 keys are case-sensitive
    "out/docs/x.md": b"outside the prefix",
}


def test_globs_follow_gitignore_and_filtered_keys_are_counted(s3env, moto):
    for key, data in KEYS.items():
        moto.put(key, data)
    s3env.write(prefix="in/", include=["docs/*.md", "a/**/c.pdf", "notes/**"], exclude=["tmp"])

    result = s3env.run()

    taken = {"in/docs/x.md", "in/a/c.pdf", "in/a/b/c.pdf", "in/notes/n.txt"}
    assert result["status"] == "succeeded" and result["errors"] == []
    assert set(s3env.documents()) == {origin_uri(BUCKET, k) for k in taken}
    assert {r.key for r in moto.log.requests if r.method == "GET" and r.per_object} == taken
    left_out = len(KEYS) - 1 - len(taken)  # listed under the prefix, not taken
    assert result["counters"]["filtered"] == left_out and result["counters"]["discovered"] == len(taken)
    compared = [line for line in s3env.log_lines() if line.get("event") == "s3 sync compared"]
    assert compared[-1]["filtered"] == left_out
    finished = [line for line in s3env.log_lines() if line.get("event") == "job finished"]
    assert finished[-1]["counters"]["filtered"] == left_out

    again = s3env.run()  # a no-op run still says how much the filters hold back
    assert again["counters"]["filtered"] == left_out and again["counters"]["ingested"] == 0


def test_a_bad_pattern_is_a_config_error_naming_the_key(s3env):
    s3env.write(exclude=["**/*.tmp", "[unclosed"])
    result = s3env.cli("check-config")
    assert result.returncode == 78
    assert "exclude" in result.stderr and "never closed" in result.stderr and "\\[" in result.stderr
