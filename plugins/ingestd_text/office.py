"""Opening an Office Open XML file and saying plainly why it could not be opened."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from ingestd.plugin import ExtractionError, Limits
from ingestd.plugin.kit.archive import check_zip, is_ole


def open_or_raise(opener: Callable, path: Path, limits: Limits):
    """`opener()`'s document, once the container is known not to be a password-protected
    one or a zip bomb."""
    if is_ole(path):
        raise ExtractionError("encrypted", "an Office file with a password (an encrypted OLE container)")
    check_zip(path, limits)
    try:
        return opener()
    except MemoryError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
        raise ExtractionError("corrupt", f"cannot be opened: {type(exc).__name__}: {str(exc)[:200]}") from None
    except Exception as exc:  # lxml's XMLSyntaxError and the libraries' own errors
        raise ExtractionError("corrupt", f"cannot be opened: {type(exc).__name__}: {str(exc)[:200]}") from None
