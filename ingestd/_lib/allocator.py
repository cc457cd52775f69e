"""C allocator settings for a daemon that runs ~100 threads for years (glibc only).

Why: the load campaign (2,000-file bursts while 100 clients poll the API) showed RSS
creeping up ~2 MiB a minute in glibc's per-thread malloc arenas, as memory that was free
but never handed back. glibc adapts its thresholds at run time: each time a mapped block
is freed, blocks up to that size are served from arenas from then on (the mmap threshold,
up to 32 MiB) and each arena keeps up to twice that size free before trimming. After a
few ~2 MiB blocks came and went, every arena could hold ~4 MiB free; with the API's ~100
handler threads spread over all of them, every arena did, while 80 KiB buffers (one per
inotify read in watchdog, 780 a second during a burst) were carved out of them and other
threads' allocations settled in the gaps. With both thresholds pinned at glibc's fixed
defaults instead (big blocks mapped, arenas trimmed past 128 KiB), free memory in the
arenas stayed at ~1 MiB where it had grown to 15 MiB (docs/reliability.md, Load).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt() parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024  # below the 80 KiB inotify buffers, so those get their own mapping
TRIM_THRESHOLD = 128 * 1024  # glibc's own default, kept instead of doubling with every big block


def pin_malloc_thresholds(mmap: int = MMAP_THRESHOLD, trim: int = TRIM_THRESHOLD) -> bool:
    """Fix where big allocations go (their own mapping from `mmap` bytes up) and how much
    free memory an arena keeps (`trim`), and stop glibc raising both at run time. Returns
    whether it was applied: not on another C library (musl's mallopt is a stub that says
    no), and not when the operator set a threshold (MALLOC_*_THRESHOLD_, GLIBC_TUNABLES)."""
    mallopt = _glibc("mallopt")
    if mallopt is None or _operator_chose():
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, mmap) == 1 and mallopt(M_TRIM_THRESHOLD, trim) == 1


def _operator_chose() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or \
        "mmap_threshold" in tunables or "trim_threshold" in tunables


def trim() -> None:
    """Give the free pages of every malloc arena back to the system: after a
    big, many-threaded structure is freed, each thread's arena holds a piece of it that
    only that thread could reuse. A few milliseconds; call it rarely."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)


def _glibc(name: str):
    """A function of the C library this process already runs on, or None off Linux or
    where that library lacks it (not glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
