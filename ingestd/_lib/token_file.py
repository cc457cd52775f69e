"""Reading the API's bearer-token file. Both config validation (`check-config`) and the
API's authenticator read it, so it lives below both."""

from __future__ import annotations

import stat
from pathlib import Path

MIN_CHARS = 16
_ALLOWED = frozenset(chr(c) for c in range(0x21, 0x7F))  # visible ASCII: what a header can carry
HOW_TO = "write one with e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`"


def read_token(path: Path) -> str:
    """The token in `path`, or ValueError saying what is wrong and how to fix it
    (PermissionError when this user may not read it)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: not a regular file")
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found; {HOW_TO}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the token must be printable ASCII; {HOW_TO}") from None
    except PermissionError:
        raise  # the caller decides: fatal for the daemon, not for another user's CLI
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    if len(text) < MIN_CHARS or not set(text) <= _ALLOWED:
        raise ValueError(f"{path}: the token must be at least {MIN_CHARS} printable characters "
                         f"without spaces; {HOW_TO}")
    return text
