"""A 200 MiB object streams through `ingestd ingest` with bounded memory.

Peak RSS is the `ingestd ingest` process's own high-water mark, from wait4() on exactly
that process, compared with the same command ingesting a tiny object so interpreter and
library size cancel out. Linux carries a process's peak across fork and exec, so a child
forked straight from this test process (which hosts moto and its copy of the object)
would report this process's size; a small launcher process forks it instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import pytest
from boto3.s3.transfer import TransferConfig

from .kit import BUCKET, SOURCE

MIB = 1 << 20
SIZE = 200 * MIB
LIMIT_OVER_BASELINE = 150 * MIB


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], "wb"))
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""


def peak_rss(config) -> tuple[int, dict, int]:
    """Run `ingestd ingest` through the launcher; (exit code, manifest, peak RSS in bytes)."""
    with tempfile.NamedTemporaryFile() as out:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, out.name,
             sys.executable, "-m", "ingestd", "ingest", SOURCE, "--json", "--config", str(config)],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        peak, code = map(int, done.stdout.split())
        return code, json.loads(open(out.name, "rb").read()), peak


class Pattern:
    """200 MiB of incompressible bytes without holding them: a 1 MiB random block with
    the chunk number stamped in, produced on demand (as the upload body) and hashed."""

    def __init__(self, size: int):
        self.size, self.pos = size, 0
        self.block = os.urandom(MIB)
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            index, offset = divmod(self.pos, MIB)
            piece = (index.to_bytes(8, "big") + self.block[8:])[offset:offset + n - len(out)]
            out += piece
            self.pos += len(piece)
        self.digest.update(out)
        return bytes(out)


@pytest.mark.slow
def test_a_200_mib_object_streams_with_bounded_memory(s3env, moto):
    moto.put("small.txt", b"small")
    s3env.write(include=["small.txt"])
    code, _, baseline = peak_rss(s3env.config)
    assert code == 0

    body = Pattern(SIZE)
    # multipart, in 4 parts: the test never holds a 200 MiB copy, and the ETag is no MD5
    moto.s3.upload_fileobj(body, BUCKET, "big/video.bin", Config=TransferConfig(multipart_chunksize=SIZE // 4))
    s3env.write(include=["big/**"])
    code, manifest, peak = peak_rss(s3env.config)

    assert code == 0 and manifest["status"] == "succeeded", manifest
    assert manifest["counters"]["ingested"] == 1 and manifest["counters"]["bytes"] == SIZE
    doc = s3env.documents()[f"s3://{BUCKET}/big/video.bin"]
    assert doc.size == SIZE and doc.sha256 == body.digest.hexdigest()
    assert "-" in doc.metadata["etag"]  # a multipart ETag, which is no MD5: our own hash decided
    grown = peak - baseline
    print(f"\npeak RSS {peak / MIB:.1f} MiB, baseline {baseline / MIB:.1f} MiB, growth {grown / MIB:.1f} MiB")
    assert grown < LIMIT_OVER_BASELINE, f"peak RSS grew by {grown / MIB:.0f} MiB for a {SIZE // MIB} MiB object"
