"""What the built-in extractors share: the install hint, and reading text of unknown
encoding."""

from __future__ import annotations

from pathlib import Path

from ingestd.plugin import ExtractionError, Limits, Requirement

INSTALL = "pip install 'ingestd[text]'"


def needs(*modules: str) -> Requirement:
    return Requirement(modules, INSTALL)


def read_bytes(path: Path, limits: Limits) -> bytes:
    """The whole file, refused as `too_large` when it could not fit the text limit even
    at one character per byte of a 4-byte encoding."""
    size = path.stat().st_size
    if size > 4 * limits.max_chars:
        raise ExtractionError("too_large", f"{size} bytes is more text than the {limits.max_chars}-character limit")
    return path.read_bytes()


def decode(data: bytes) -> str:
    """Text in whatever encoding it came in: BOMs and valid UTF-8 first (most files, and
    the cheap case), then charset-normalizer's guess over the first MiB."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    return data.decode(_guess(from_bytes(data[: 1 << 20])), errors="replace")


PREFERRED = "cp1252"  # Windows' Western code page: the most common single-byte legacy text


def _guess(matches) -> str:
    """charset-normalizer's best guess, except that where the single-byte code pages it
    cannot tell apart include cp1252, cp1252 is taken: on a short text with a few
    accented letters, cp1250, cp1257 and cp1252 decode to equally clean text, and
    cp1252 is by far the likeliest to have written it."""
    best = matches.best()
    if best is None:
        return PREFERRED
    tied = [m.encoding for m in matches if m.chaos <= best.chaos + 0.001]
    return PREFERRED if PREFERRED in tied else best.encoding
