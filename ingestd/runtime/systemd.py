"""sd_notify on the standard library: tell systemd when we are ready, reloading,
stopping, and alive. Without NOTIFY_SOCKET (not under systemd) every call is a no-op."""

from __future__ import annotations

import os
import socket
import time


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):  # abstract namespace socket
        return "\0" + addr[1:]
    return addr


def send(*lines: str) -> bool:
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            # never block a worker on a reader that is slow or gone: a lost STATUS= line
            # is harmless, a hung job queue is not
            sock.send("\n".join(lines).encode(), socket.MSG_DONTWAIT)
        return True
    except OSError:
        return False


def ready(status: str) -> bool:
    return send("READY=1", f"STATUS={status}")


def starting(status: str, extend_s: int = 90) -> bool:
    """Still starting (a migration step): push the start timeout `extend_s` further."""
    return send(f"EXTEND_TIMEOUT_USEC={extend_s * 1_000_000}", f"STATUS={status}")


def reloading() -> bool:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return send("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    return send("STOPPING=1")


def status(text: str) -> bool:
    return send(f"STATUS={text}")


def watchdog() -> bool:
    return send("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC, in seconds, when systemd expects keep-alives from us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
