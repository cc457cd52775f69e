"""A TCP proxy on 127.0.0.1 that makes a local server look a region away: every chunk a
client sends is held for `delay` seconds before it goes upstream (answers come straight
back), so each request reaches the server that much later and each exchange takes that
much longer, however many are in flight. Chunks keep their order; the delay does not
accumulate (a chunk waits `delay` from when it arrived, not after the one before it).

    python -m bench.delay UPSTREAM_PORT DELAY_SECONDS     prints the port it listens on

It runs as a process of its own, so its CPU is neither the harness's nor the client's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

CHUNK = 256 * 1024


async def _pipe_delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    async def take() -> None:
        while chunk := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay, chunk))
        queue.put_nowait(None)

    async def give() -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    await asyncio.gather(take(), give())


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(CHUNK):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


def handler(upstream_port: int, delay: float):
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(_pipe_delayed(client_r, up_w, delay), _pipe(up_r, client_w))
        except (OSError, asyncio.IncompleteReadError):
            pass  # one side went away: close both
        finally:
            for w in (up_w, client_w):
                w.close()

    return handle


async def serve(upstream_port: int, delay: float) -> None:
    server = await asyncio.start_server(handler(upstream_port, delay), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    # stopped by SIGTERM mid-exchange: nothing to flush, and no tracebacks of cut connections
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(serve(int(argv[0]), float(argv[1])))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class DelayProxy:
    """The proxy as a child process of the harness, in front of a local port."""

    def __init__(self, upstream_port: int, delay: float):
        self.upstream_port, self.delay = upstream_port, delay
        self.proc = None
        self.port: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DelayProxy":
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "bench.delay", str(self.upstream_port), str(self.delay)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the delay proxy did not start (said {line!r})")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 (TimeoutExpired: it must go)
                self.proc.kill()
                self.proc.wait(timeout=10)
