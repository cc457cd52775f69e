"""What the figures were measured on. Ratios travel between machines better than
seconds do, but only next to the machine that produced them."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def describe(workdir: Path) -> dict:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_meminfo_kib("MemTotal") / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "disk": _disk(workdir),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _disk(path: Path) -> str:
    """Device, filesystem and mount options of the work directory: an ext4 on virtio with
    `discard` and a tmpfs give very different sync figures."""
    try:
        out = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", str(path)],
                             capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if len(out) < 2:
        return "unknown"
    source, fstype = out[0], out[1]
    options = out[2] if len(out) > 2 else ""
    return f"{source} {fstype} ({options}){_rotational(source)}"


def _rotational(source: str) -> str:
    name = Path(source).name
    flag = Path(f"/sys/block/{name}/queue/rotational")
    try:
        return ", rotational" if flag.read_text().strip() == "1" else ", non-rotational"
    except OSError:
        return ""
