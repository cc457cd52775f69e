"""Reading the API's bearer-token file. Both config validation (`check-config`) and the
API's authenticator read it, so it lives below both."""

from __future__ import annotations

from pathlib import Path

from ingestd._lib.files import read_private

MIN_CHARS = 16
_ALLOWED = frozenset(chr(c) for c in range(0x21, 0x7F))  # visible ASCII: what a header can carry
HOW_TO = "write one with e.g. `(umask 077; openssl rand -hex 32 > FILE)`"


def read_token(path: Path) -> str:
    """The token in `path`, or ValueError saying what is wrong and how to fix it
    (PermissionError when this user may not read it)."""
    try:
        text = read_private(path, 4096).decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the token must be printable ASCII; {HOW_TO}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found; {HOW_TO}") from None
    except PermissionError:
        raise  # the caller decides: fatal for the daemon, not for another user's CLI
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    if len(text) < MIN_CHARS or not set(text) <= _ALLOWED:
        raise ValueError(f"{path}: the token must be at least {MIN_CHARS} printable characters "
                         f"without spaces; {HOW_TO}")
    return text
