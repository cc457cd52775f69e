"""Deterministic corpora: the same seed gives the same bytes on every machine, so two runs
(or two people) compare like with like.

small: many 1-64 KiB files of mixed types with real magic bytes (PDF, PNG, ZIP, text,
JSON, HTML) in nested folders, so MIME detection does the work it does in production.
large: a few big files of incompressible bytes, so hashing and disk bandwidth dominate.
drop corpora (issue 20): N files of 1-32 KiB, a third random bytes, a third text, a third
typed documents with real magic bytes, spread evenly over a given number of folders (two
levels: `g000/f00`, 100 folders per group) or all in one folder; every file's content
is unique, so nothing is deduplicated away.
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
    folders: int | None = None  # a drop corpus: files spread over this many folders (0: all at the top)


SMALL = Spec("small", 2000, 1 * KIB, 64 * KIB, mixed=True)
LARGE = Spec("large", 8, 64 * MIB, 64 * MIB, mixed=False)
SMOKE_SMALL = Spec("small", 40, 1 * KIB, 16 * KIB, mixed=True)
SMOKE_LARGE = Spec("large", 2, 1 * MIB, 1 * MIB, mixed=False)
FILES_PER_FOLDER = 20  # the drop corpora's density: 20,000 files in 1,000 folders, as in issue 20


def drop_spec(files: int, folders: int | None = None, min_size: int = 1 * KIB, max_size: int = 32 * KIB) -> Spec:
    """A drop corpus of `files` files, FILES_PER_FOLDER to a folder unless told otherwise."""
    if folders is None:
        folders = max(1, files // FILES_PER_FOLDER)
    return Spec(f"drop-{files}-{folders}-{min_size}-{max_size}", files, min_size, max_size, mixed=True,
                folders=folders)


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
    make = _file if spec.folders is None else _drop_file
    made: set[str] = set()
    for i in range(spec.files):
        rel, data = make(spec, rng, i)
        folder = os.path.dirname(rel)
        if folder not in made:
            os.makedirs(root / folder, exist_ok=True)
            made.add(folder)
        with open(root / rel, "wb") as fh:
            fh.write(data)
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


def folder_of(i: int, folders: int) -> str:
    """The folder of the i-th file: two levels, 100 folders per group ("" when flat)."""
    if folders <= 0:
        return ""
    leaf = i % folders
    return f"g{leaf // 100:03d}/f{leaf % 100:02d}/"


def _drop_file(spec: Spec, rng: random.Random, i: int) -> tuple[str, bytes]:
    size = rng.randint(spec.min_size, spec.max_size)
    third = i % 3
    if third == 0:
        kind, ext, data = "bin", "bin", rng.randbytes(size)
    elif third == 1:
        kind, ext, data = "text", "txt", _pool_text(rng, size, i)
    else:
        kind = TYPED[(i // 3) % len(TYPED)]
        ext, make = MAKERS[kind]
        data = make(rng, size) if kind in ("pdf", "png", "zip") else _typed_text(kind, rng, size, i)
    return f"{folder_of(i, spec.folders)}{kind}-{i:07d}.{ext}", data


_POOL: list[bytes] = []


def _pool_text(rng: random.Random, size: int, i: int) -> bytes:
    """Text of `size` bytes, unique by its first line, cut from one pre-made pool: a million
    files of prose must not take minutes to make."""
    if not _POOL:
        _POOL.append(_text(random.Random(SEED), 256 * KIB))
    pool = _POOL[0]
    head = f"document {i}\n".encode()
    start = rng.randrange(0, len(pool) - 64 * KIB)
    return (head + pool[start:start + size])[:max(size, len(head))]


def _typed_text(kind: str, rng: random.Random, size: int, i: int) -> bytes:
    body = _pool_text(rng, size, i)
    if kind == "json":
        return json.dumps({"id": i, "text": body.decode()}).encode()
    head = b"<!DOCTYPE html>\n<html><head><title>report</title></head><body><pre>\n"
    return head + body + b"</pre></body></html>\n"


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
TYPED = ("pdf", "png", "zip", "html", "json")  # the drop corpora's typed third


# -- using a corpus ---------------------------------------------------------------------


def link_tree(corpus: Corpus, dest: Path, files: list[str] | None = None, flat: bool = False) -> None:
    """Hard-link the corpus into `dest`: a drop folder filled in milliseconds with the same
    cached pages, so set-up costs nothing and every run reads the same data. `flat` puts
    every file straight in `dest` (the drop corpora's names are unique without folders)."""
    made: set[str] = set()
    root = str(corpus.root)
    for rel in files if files is not None else corpus.files:
        target = os.path.join(dest, os.path.basename(rel) if flat else rel)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        os.link(os.path.join(root, rel), target)


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
