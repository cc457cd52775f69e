"""The fake's own QuickXorHash, written independently of the connector's, so a bug in
one cannot hide in agreement with the other.

`quick_xor_bits` is a literal transcription of the definition (each byte's bits XORed in
at 11·k mod 160, the length into the last 8 bytes): slow, obviously right, used for small
inputs and as the oracle in tests. For large files the fake XORs each of the 160 strided
columns down to one byte (a different route from the connector's block folding).
"""

from __future__ import annotations

import base64

WIDTH = 160
SHIFT = 11
SIZE = WIDTH // 8


def quick_xor_bits(data: bytes) -> bytes:
    register = bytearray(SIZE)
    for k, byte in enumerate(data):
        offset = k * SHIFT % WIDTH
        for bit in range(8):
            if byte >> bit & 1:
                position = (offset + bit) % WIDTH
                register[position // 8] ^= 1 << position % 8
    for i, byte in enumerate(len(data).to_bytes(8, "little")):
        register[SIZE - 8 + i] ^= byte
    return bytes(register)


def _xor_bytes(data: bytes) -> int:
    """XOR of all bytes of `data`, by halving it as one big integer."""
    x, bits = int.from_bytes(data, "little"), 8 * len(data)
    while bits > 8:
        half = (bits // 16) * 8 or 8
        x = (x >> half) ^ (x & ((1 << half) - 1))
        bits -= half
    return x & 0xFF


def quick_xor_columns(data: bytes) -> bytes:
    register = 0
    for column in range(min(WIDTH, len(data))):
        value = _xor_bytes(data[column::WIDTH])
        shifted = value << (column * SHIFT % WIDTH)
        register ^= (shifted | (shifted >> WIDTH)) & ((1 << WIDTH) - 1)
    out = bytearray(register.to_bytes(SIZE, "little"))
    for i, byte in enumerate(len(data).to_bytes(8, "little")):
        out[SIZE - 8 + i] ^= byte
    return bytes(out)


def quick_xor_b64(data: bytes) -> str:
    digest = quick_xor_bits(data) if len(data) <= 4096 else quick_xor_columns(data)
    return base64.b64encode(digest).decode()
