"""Small file operations shared by core and plugins."""

from __future__ import annotations

import os


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    """Remove `path`; one already gone is what we wanted anyway."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
