"""Deterministic corpora: the same seed gives the same bytes on every machine, so two runs
(or two people) compare like with like.

small: many 1-64 KiB files of mixed types with real magic bytes (PDF, PNG, ZIP, text,
JSON, HTML) in nested folders, so MIME detection does the work it does in production.
large: a few big files of incompressible bytes, so hashing and disk bandwidth dominate.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
SEED = 7  # issue 7


@dataclass(frozen=True)
class Spec:
    name: str
    files: int
    min_size: int
    max_size: int
    mixed: bool  # mixed document types in nested folders, or plain binary files at the top


SMALL = Spec("small", 2000, 1 * KIB, 64 * KIB, mixed=True)
LARGE = Spec("large", 8, 64 * MIB, 64 * MIB, mixed=False)
SMOKE_SMALL = Spec("small", 40, 1 * KIB, 16 * KIB, mixed=True)
SMOKE_LARGE = Spec("large", 2, 1 * MIB, 1 * MIB, mixed=False)


@dataclass
class Corpus:
    spec: Spec
    root: Path
    files: list[str]  # relative paths, sorted
    total_bytes: int

    def path(self, rel: str) -> Path:
        return self.root / rel


def build(spec: Spec, root: Path) -> Corpus:
    """Write the corpus under `root` (which must not exist yet)."""
    rng = random.Random(f"{SEED}-{spec.name}-{spec.files}")
    root.mkdir(parents=True)
    files, total = [], 0
    for i in range(spec.files):
        rel, data = _file(spec, rng, i)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(rel)
        total += len(data)
    return Corpus(spec, root, sorted(files), total)


def _file(spec: Spec, rng: random.Random, i: int) -> tuple[str, bytes]:
    size = rng.randint(spec.min_size, spec.max_size)
    if not spec.mixed:
        return f"large-{i:02d}.bin", rng.randbytes(size)
    kind = KINDS[i % len(KINDS)]
    depth = rng.choice((1, 2, 2, 3))
    parts = [f"d{rng.randrange(6)}", f"s{rng.randrange(4)}", f"t{rng.randrange(3)}"][:depth]
    ext, make = MAKERS[kind]
    return "/".join([*parts, f"{kind}-{i:05d}.{ext}"]), make(rng, size)


# -- document kinds: each starts the way real files of that type do ---------------------

WORDS = ("ingest document report invoice quarter summary budget review folder contract "
         "policy archive scan meeting minutes draft final approved pending vendor ledger").split()


def _text(rng: random.Random, size: int) -> bytes:
    words, length = [], 0
    while length < size:
        line = " ".join(rng.choices(WORDS, k=12)) + "\n"
        words.append(line)
        length += len(line)
    return "".join(words).encode()[:size]


def _json(rng: random.Random, size: int) -> bytes:
    rows, length = [], 4
    while True:
        row = json.dumps({"id": len(rows), "name": rng.choice(WORDS), "amount": rng.randint(1, 10**6),
                          "tags": rng.sample(WORDS, 3)})
        if length + len(row) + 2 > size:
            break
        rows.append(row)
        length += len(row) + 2
    body = ("[\n" + ",\n".join(rows) + "\n]").encode()
    return body + b" " * (size - len(body))  # trailing blanks keep it valid JSON of the exact size


def _html(rng: random.Random, size: int) -> bytes:
    head = b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>report</title></head><body>\n"
    tail = b"</body></html>\n"
    paras = []
    length = len(head) + len(tail)
    while True:
        p = b"<p>" + _text(rng, 200).replace(b"\n", b" ") + b"</p>\n"
        if length + len(p) > size:
            break
        paras.append(p)
        length += len(p)
    return head + b"".join(paras) + b"\n" * (size - length) + tail


def _pdf(rng: random.Random, size: int) -> bytes:
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length LEN >>\nstream\n"
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    body = rng.randbytes(max(0, size - len(head) - len(tail) - 8))
    return head.replace(b"LEN", str(len(body)).encode()) + body + tail


def _png(rng: random.Random, size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    payload = rng.randbytes(max(0, size - 8 - len(ihdr) - 12 - 12))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", payload) + chunk(b"IEND", b"")


def _zip(rng: random.Random, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("data.bin", rng.randbytes(max(0, size - 130)))
    return buf.getvalue()


MAKERS = {
    "text": ("txt", _text), "json": ("json", _json), "html": ("html", _html),
    "pdf": ("pdf", _pdf), "png": ("png", _png), "zip": ("zip", _zip),
}
KINDS = tuple(MAKERS)


# -- using a corpus ---------------------------------------------------------------------


def link_tree(corpus: Corpus, dest: Path, files: list[str] | None = None) -> None:
    """Hard-link the corpus into `dest`: a drop folder filled in milliseconds with the same
    cached pages, so set-up costs nothing and every run reads the same data."""
    for rel in files if files is not None else corpus.files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(corpus.root / rel, target)


ROT13 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def changed(data: bytes, same_size: bool, salt: int) -> bytes:
    """New content for a changed object: same length (the case size checks miss) or longer."""
    if not same_size:
        return data + f"\nappended change {salt}\n".encode()
    mid = len(data) // 2
    window = data[mid:mid + 256]
    new = window.translate(ROT13)
    if new == window:
        new = bytes(b ^ 0x5A for b in window)
    return data[:mid] + new + data[mid + len(window):]
