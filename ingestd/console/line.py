"""A block of status lines rewritten in place on a terminal, which log records share.

Log records and the live lines go to the same stderr: a record first erases the block (it
would otherwise be appended to a half-drawn line), then the next redraw puts the block back
under it. Lines are cut to the terminal's width, because a wrapped line cannot be erased
with a carriage return.
"""

from __future__ import annotations

import shutil
import threading

ERASE_LINE = "\r\x1b[K"
UP_AND_ERASE = "\x1b[1A\x1b[K"


class LiveLines:
    def __init__(self, stream):
        self.stream = stream
        self._lock = threading.RLock()
        self._shown = 0  # lines of the block on screen now

    def draw(self, lines: list[str]) -> None:
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        text = "\n".join(_fit(line, width) for line in lines)
        with self._lock:
            self.stream.write(self._erase() + text)
            self.stream.flush()
            self._shown = len(lines)

    def clear(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write(self._erase())
                self.stream.flush()
                self._shown = 0

    # the stream interface, for logging.StreamHandler
    def write(self, text: str) -> int:
        with self._lock:
            self.stream.write(self._erase() + text)
            self._shown = 0
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def _erase(self) -> str:
        return "" if not self._shown else ERASE_LINE + UP_AND_ERASE * (self._shown - 1)


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"
