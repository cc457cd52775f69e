"""`files.send` for a body without a file descriptor (a blob streamed from S3): copied in
large blocks, yet a client that reads slowly but steadily is not cut off. The transport's
send timeout bounds each wait for the client, as with `sendfile`, not a whole block."""

from __future__ import annotations

import io
import socket
import threading
import time

from ingestd.api.transport import files


def test_a_slow_steady_reader_gets_every_block():
    data = bytes(range(256)) * (8 << 10)  # 2 MiB: two blocks
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    server.settimeout(1.0)  # each wait for the client at most 1 s; a 1 MiB block takes ~2 s to drain
    received = bytearray()

    def slow_reader():  # 64 KiB per 1/8 s, steadily: 512 KiB/s
        while len(received) < len(data) and (chunk := client.recv(64 << 10)):
            received.extend(chunk)
            time.sleep(0.125)  # pacing a slow client, not synchronisation

    reader = threading.Thread(target=slow_reader)
    reader.start()
    with listener, client, server:
        assert files.send(server, io.BytesIO(data), 0, len(data)) == len(data)
        reader.join(60)
    assert bytes(received) == data
