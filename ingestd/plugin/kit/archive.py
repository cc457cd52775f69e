"""Refusing a zip bomb before a parser opens it: DOCX, PPTX, XLSX and ODT are zip
archives, and their parsers unpack members whole. Python's zipfile never yields more
than a member's declared size, so checking the declared sizes is enough to bound what
any zipfile-based parser can unpack."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ingestd.plugin.extractor import ExtractionError, Limits

MAX_MEMBERS = 100_000
MAX_RATIO = 200  # a member unpacking to more than this many times its packed size, past 1 MiB


def check_zip(path: Path, limits: Limits) -> None:
    """Raise `too_large` for an archive that would unpack past `limits.max_unpacked` (or
    with a bomb's compression ratio), `encrypted` for an encrypted one (an Office file
    with a password is a different container, see `is_ole`), `corrupt` for a broken one."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ExtractionError("corrupt", f"not a readable zip container: {exc}") from None
    if len(members) > MAX_MEMBERS:
        raise ExtractionError("too_large", f"the container holds {len(members)} members (limit {MAX_MEMBERS})")
    total = 0
    for member in members:
        if member.flag_bits & 0x1:
            raise ExtractionError("encrypted", "the container's members are encrypted")
        total += member.file_size
        if member.file_size > 1 << 20 and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise ExtractionError("too_large", f"member {member.filename[:80]!r} unpacks {member.file_size} bytes "
                                  f"from {member.compress_size} (a zip bomb)")
    if total > limits.max_unpacked:
        raise ExtractionError("too_large", f"the container unpacks to {total} bytes (limit {limits.max_unpacked})")


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def is_ole(path: Path) -> bool:
    """An OLE compound file: what Office writes for a password-protected DOCX/XLSX/PPTX
    (and for the old binary formats)."""
    with open(path, "rb") as fh:
        return fh.read(8) == OLE_MAGIC
