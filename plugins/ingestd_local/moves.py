"""Originals in flight between the drop folder and the state directory.

An original leaves by link, then unlink (originals.py says why not rename). A process
killed between the two leaves one file under both names; in the drop folder it then has
two links, and the next job refuses it as a hard link, for ever: ingested, but never
leaving the folder. So before its first link a job writes down the moves it is about to
make, and the next job of the source, before it looks at the folder, finishes each move
a killed one left half done: where both names are still the file that job read, the
drop folder's name goes. Anything else (the link never made, the file replaced since)
is left to the normal course: read again, found unchanged, moved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ingestd.plugin.kit import Dir, Identity, identity, write_bytes

FILE = "moving.json"


@dataclass(frozen=True)
class Move:
    parts: tuple[str, ...]  # the original, below the drop folder
    target: tuple[str, ...]  # where it goes, below the state directory
    ident: Identity  # the file the job read

    def encode(self) -> list:
        hexed = [[os.fsencode(p).hex() for p in self.parts], [os.fsencode(p).hex() for p in self.target]]
        return [*hexed, list(self.ident)]  # names are bytes on Linux: hex keeps any of them exact

    @classmethod
    def decode(cls, row: list) -> "Move":
        parts, target, ident = row
        return cls(tuple(os.fsdecode(bytes.fromhex(p)) for p in parts),
                   tuple(os.fsdecode(bytes.fromhex(p)) for p in target), tuple(ident))


class Journal:
    """The moves of the job running now for one source (one at a time: the source lock)."""

    def __init__(self, folder: Path):
        self.path = folder / FILE

    def note(self, moves: list[Move]) -> None:
        """Durable before the first link, so no crash can outrun it."""
        if moves:
            write_bytes(self.path, json.dumps([m.encode() for m in moves], separators=(",", ":")).encode())

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def left(self) -> list[Move]:
        try:
            rows = json.loads(self.path.read_bytes())
            return [Move.decode(row) for row in rows]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError):
            return []  # unreadable (torn by hand): the moves are left to the normal course

    def finish_left(self, tree: Dir, state_dir: Path) -> list[str]:
        """Finish the moves a killed job left with the file under both names; the drop
        folder paths that went (relative, `/`-joined)."""
        moves = self.left()
        if not moves:
            return []
        done = []
        with Dir.open(state_dir) as state:
            for move in moves:
                if _finish(tree, state, move):
                    done.append(os.sep.join(move.parts))
        self.clear()
        return done


def _finish(tree: Dir, state: Dir, move: Move) -> bool:
    if not all(_plain(p) for p in (*move.parts, *move.target)):
        return False  # not a name a job wrote: never followed out of the held folders
    try:
        with tree.walk(move.parts[:-1]) as parent, state.walk(move.target[:-1]) as target:
            here = identity(parent.stat(move.parts[-1]))
            there = identity(target.stat(move.target[-1]))
            if here != move.ident or there != move.ident:
                return False  # not the file read under both names: the normal course decides
            parent.unlink(move.parts[-1])
            return True
    except OSError:
        return False  # either name gone or out of reach: nothing half done to finish


def _plain(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name
