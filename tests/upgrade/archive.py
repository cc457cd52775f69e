"""The fixture archive: a tree packed with relative names, modes and mtimes (the kept-file
memory compares mtimes), owners left out, in name order."""

from __future__ import annotations

import tarfile
from pathlib import Path


def pack(root: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w:gz", compresslevel=9, format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            if path.is_socket():
                continue
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=_anonymous)
    tmp.replace(out)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def unpack(archive: Path, dest: Path) -> Path:
    """Extract into `dest` (made if needed); refuses anything that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="tar")
    return dest
