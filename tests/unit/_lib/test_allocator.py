"""The allocator setting that keeps the daemon's RSS flat under API load (see allocator.py).

Checked in a fresh interpreter each time: the setting is process-wide. What it must stop
is glibc's run-time raise of its thresholds: once a big mapped block has been freed, an
unpinned glibc serves blocks up to that size from its arenas (and keeps that much free in
each) instead of giving each its own mapping, returned to the kernel when freed.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT

PROBE = """
import ctypes, sys
class Mallinfo(ctypes.Structure):  # glibc's struct mallinfo; hblks counts mmapped blocks
    _fields_ = [(name, ctypes.c_int) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo.restype = Mallinfo
if sys.argv[1] == "pin":
    from ingestd._lib.allocator import pin_malloc_thresholds
    assert pin_malloc_thresholds()
big = bytearray(4 << 20)
del big  # unpinned, freeing a 4 MiB mapping raises glibc's mmap threshold to 4 MiB
before = libc.mallinfo().hblks
buffer = bytearray(1 << 20)  # more than any arena has free in a fresh interpreter
print(libc.mallinfo().hblks - before)
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo"), reason="glibc malloc only")


def mapped_blocks_for_a_buffer(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@glibc_only
def test_a_pinned_threshold_still_maps_big_buffers_after_a_bigger_one_was_freed():
    assert mapped_blocks_for_a_buffer("pin") == 1


@glibc_only
def test_without_it_the_buffer_comes_from_an_arena():
    """The probe itself can tell the difference (so the test above can fail)."""
    assert mapped_blocks_for_a_buffer("default") == 0


def test_the_operators_choice_wins(monkeypatch):
    from ingestd._lib import allocator

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert allocator.pin_malloc_thresholds() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert allocator.pin_malloc_thresholds() is False
