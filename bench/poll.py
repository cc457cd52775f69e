"""API clients for the big-store case: many pollers on keep-alive connections, each asking
at a steady rate (a status page or a script waiting for its job), and one client walking
`/jobs` page by page. Latency is from the request's first byte sent to the response's
last byte read, on the client's monotonic clock.

The pollers run on one asyncio loop in the harness: at a few hundred requests a second
the loop is idle most of the time, so its own delay stays far below what is measured.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Polled:
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # kind → latencies
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, ms: float) -> None:
        self.latencies_ms.setdefault(kind, []).append(ms)


class Connection:
    def __init__(self, address: str):
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, milliseconds) of one GET on this keep-alive connection."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        start = time.monotonic()
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length, closing = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                closing = True
        body = await self.reader.readexactly(length)
        ms = (time.monotonic() - start) * 1000
        if closing:
            await self.close()
        return status, body, ms

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = self.reader = None


def poll(address: str, pollers: int, rate: float, seconds: float,
         pick: Callable[[int, random.Random], tuple[str, str]], seed: int = 1) -> Polled:
    """`pollers` clients, each asking `rate` times a second for `seconds`; `pick(n, rng)`
    gives the n-th request's (kind, path)."""
    return asyncio.run(_poll(address, pollers, rate, seconds, pick, seed))


async def _poll(address, pollers, rate, seconds, pick, seed) -> Polled:
    out = Polled()
    start = time.monotonic()
    until = start + seconds
    tasks = [asyncio.create_task(_poller(address, rate, until, pick, random.Random(seed * 1000 + i), out))
             for i in range(pollers)]
    await asyncio.gather(*tasks)
    out.seconds = time.monotonic() - start
    return out


async def _poller(address, rate, until, pick, rng: random.Random, out: Polled) -> None:
    conn = Connection(address)
    interval = 1.0 / rate
    due = time.monotonic() + rng.random() * interval  # pollers out of step, as real ones are
    n = 0
    try:
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            kind, path = pick(n, rng)
            n += 1
            try:
                status, _, ms = await conn.get(path)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out.errors.append(f"{path}: {type(exc).__name__}")
                await conn.close()
            else:
                if status == 200:
                    out.add(kind, ms)
                else:
                    out.errors.append(f"{path}: HTTP {status}")
            due += interval
    finally:
        await conn.close()


def gets(address: str, paths: list[str]) -> list[tuple[int, dict | None, float]]:
    """One client asking for `paths` in turn: (status, JSON body, milliseconds) each."""
    return asyncio.run(_gets(address, paths))


async def _gets(address: str, paths: list[str]) -> list[tuple[int, dict | None, float]]:
    conn = Connection(address)
    out = []
    try:
        for path in paths:
            status, body, ms = await conn.get(path)
            out.append((status, json.loads(body) if body else None, ms))
    finally:
        await conn.close()
    return out


def walk(address: str, first: str, pages: int) -> list[float]:
    """Follow `/jobs` cursors from `first` for `pages` pages; the milliseconds of each."""
    return asyncio.run(_walk(address, first, pages))


async def _walk(address: str, first: str, pages: int) -> list[float]:
    conn = Connection(address)
    out, path = [], first
    try:
        for _ in range(pages):
            status, body, ms = await conn.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}")
            out.append(ms)
            links = json.loads(body).get("links") or {}
            path = links.get("next")
            if not path:
                break
    finally:
        await conn.close()
    return out
