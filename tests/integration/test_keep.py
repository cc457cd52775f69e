"""`after = "keep"`: originals stay put, and what was taken is not read again, even after
the process that took it is gone."""

import os

from tests.integration.test_oneshot import HOSTILE, drop, ingest

from ingestd_local.memory import FAILED, TAKEN, Memory


def snap(path: str):
    st = os.lstat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


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
    c = second["counters"]  # what was skipped unread still counts as there, and unchanged
    assert (c["discovered"], c["unchanged"], c["ingested"]) == (len(names) + 1, len(names) - 2, 3), c
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
    memory = Memory(tmp_path)
    memory.remember([(name, snap(str(path)), TAKEN)])
    assert memory.state(name, snap(str(path))) == TAKEN
    assert memory.state(os.fsdecode(b"caf\xe8.txt"), snap(str(path))) is None
    assert memory.state(name, None) is None, "a vanished file is never 'unchanged'"
    memory.close()


def test_refusals_are_forgotten_when_the_settings_change(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 11)
    memory = Memory(tmp_path, {"max_file_size": 10})
    memory.remember([("big.txt", snap(str(path)), FAILED), ("ok.txt", (1, 2, 3), TAKEN)])
    memory.close()
    memory = Memory(tmp_path, {"max_file_size": 10})
    assert memory.state("big.txt", snap(str(path))) == FAILED
    memory.close()
    memory = Memory(tmp_path, {"max_file_size": 100})  # the limit was raised: look again
    assert memory.state("big.txt", snap(str(path))) is None
    assert memory.state("ok.txt", (1, 2, 3)) == TAKEN
    memory.close()
