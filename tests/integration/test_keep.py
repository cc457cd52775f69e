"""`after = "keep"`: originals stay put, and what was taken is not read again, even after
the process that took it is gone."""

import os

from tests.integration.test_oneshot import HOSTILE, drop, ingest

from ingestd_local.kept import Kept, snap


def test_a_second_run_reads_only_what_changed(env):
    env.write(after="keep")
    names = ["a.txt", "sub/b.txt", "same-size.txt", "replaced.txt", *HOSTILE]
    for name in names:
        drop(env.inbox, name, b"v1 " + name.encode("utf-8", "surrogateescape"))
    _, first = ingest(env)
    assert first["counters"]["ingested"] == len(names)

    same = env.inbox / "same-size.txt"
    same.write_bytes(b"v2 same-size.txt")  # same size, new mtime
    os.utime(same, ns=(0, os.stat(same).st_mtime_ns + 1_000_000_000))
    replaced = env.inbox / "replaced.txt"
    stat = os.stat(replaced)
    fresh = drop(env.inbox, "replaced.tmp", b"v2 replaced.txt")  # same size and mtime, new inode
    os.utime(fresh, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.rename(fresh, replaced)
    drop(env.inbox, "new.txt", b"new")

    _, second = ingest(env)
    assert second["counters"]["discovered"] == 3, second["counters"]
    assert second["counters"]["ingested"] == 3
    assert all((env.inbox / name).exists() for name in names)


def test_a_failed_job_remembers_nothing(env):
    env.write(after="keep", max_file_size=10)
    drop(env.inbox, "big.txt", b"x" * 11)
    _, first = ingest(env)
    assert first["counters"]["failed"] == 1
    _, second = ingest(env)
    assert second["counters"]["failed"] == 1, "a refused file must be looked at again"


def test_kept_keys_are_exact_for_undecodable_names(tmp_path):
    name = os.fsdecode(b"caf\xe9.txt")
    path = tmp_path / name
    path.write_bytes(b"x")
    with Kept(tmp_path) as kept:
        kept.remember([(name, snap(str(path)))])
        assert kept.unchanged(name, snap(str(path)))
        assert not kept.unchanged(os.fsdecode(b"caf\xe8.txt"), snap(str(path)))
        assert not kept.unchanged(name, None), "a vanished file is never 'unchanged'"
