"""A TCP proxy on 127.0.0.1 that can blackhole: while `blackholed`, bytes in both
directions are swallowed (connections stay open, nothing is refused or reset), which is
what a partition looks like to the kernel of a host whose peer vanished: no error, only
silence. `heal()` lets bytes through again (for connections made after it)."""

from __future__ import annotations

import select
import socket
import threading


class Proxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.blackholed = threading.Event()
        self.closed = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self.threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.closed.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if not self.blackholed.is_set():
                        peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass

    def blackhole(self) -> None:
        self.blackholed.set()

    def heal(self) -> None:
        self.blackholed.clear()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        with self._lock:
            sockets, threads = list(self.sockets), list(self.threads)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass
        for t in threads:
            t.join(timeout=5)
