"""A 100 MiB file goes through `ingestd ingest` with memory that does not grow with it.

The peak is the kernel's high-water mark of the child's resident set (`VmHWM`), read as
the child exits. (`wait4`'s ru_maxrss would not do: it keeps the peak from before exec,
when the forked child was still a copy of this pytest process, fake's files and all.)
"""

import hashlib
import json
import os
import sys

import pytest

from tests.support.helpers import run_cli

MIB = 1 << 20
REPORTER = """
import atexit, os

def _report_peak_rss():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["INGESTD_TEST_PEAK_RSS"], "w") as out:
        out.write(peak)

if os.environ.get("INGESTD_TEST_PEAK_RSS"):
    atexit.register(_report_peak_rss)
"""


def ingest_measuring_peak_rss(sp, tmp_path, name: str) -> tuple[dict, int]:
    """Run `ingestd ingest` as a child; return its manifest and peak RSS in bytes."""
    hook = tmp_path / "peak-rss-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(REPORTER)
    report = tmp_path / f"{name}.peak"
    env = {"PYTHONPATH": os.pathsep.join([str(hook), *sys.path]), "INGESTD_TEST_PEAK_RSS": str(report)}
    result = run_cli("ingest", "docs", "--json", "--config", sp.config, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), int(report.read_text()) * 1024  # VmHWM is in kB


@pytest.mark.slow
def test_a_100_mib_file_streams_with_bounded_memory(sp, tmp_path):
    sp.drive.add("small.bin", os.urandom(64 * 1024))
    first, baseline = ingest_measuring_peak_rss(sp, tmp_path, "small")
    assert first["counters"]["ingested"] == 1

    data = os.urandom(100 * MIB)
    item = sp.drive.add("Archive/huge.bin", data)
    manifest, peak = ingest_measuring_peak_rss(sp, tmp_path, "big")

    assert manifest["status"] == "succeeded" and manifest["counters"]["bytes"] == len(data)
    doc = sp.doc(item)
    assert doc.sha256 == hashlib.sha256(data).hexdigest() and doc.size == len(data)
    growth = peak - baseline
    print(f"\npeak RSS: {baseline / MIB:.1f} MiB for 64 KiB, {peak / MIB:.1f} MiB for 100 MiB "
          f"(+{growth / MIB:.1f} MiB)")
    assert growth < 16 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB for a 100 MiB file"
