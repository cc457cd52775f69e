"""Drop-folder ingestion: take each settled regular file, then move it out of the way.

The original is only moved (or deleted) in `finish`, after its blob, record and the
job manifest are durable, so a crash at any point leaves the file ingested or still
waiting in the folder, never lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import Connector, Failed, JobContext, Outcome, Staged
from ingestd.plugin.kit import display, file_uri, safe_name, safe_parts, unlink_quietly, write_json

from .kept import Kept, snap
from .options import LocalOptions

RETRY_LATER = {Code.TRANSIENT, Code.DISK_FULL, Code.INTERRUPTED, Code.IO}
EMPTY_FOLDER_GRACE = 300.0  # seconds a subfolder must sit empty and untouched before it goes


class LocalConnector(Connector):
    kind = "local"
    Options = LocalOptions
    watched = True
    description = "a drop folder on local disk"

    @property
    def root(self) -> Path:
        return self.options.path

    def check(self) -> list[str]:
        problems = []
        if not self.root.is_dir():
            problems.append(f'sources "{self.source.name}": path: {self.root} is not a directory (create it)')
        state = os.path.realpath(self.state_dir)
        root = os.path.realpath(self.root)
        if state == root or state.startswith(root + os.sep) or root.startswith(state + os.sep):
            problems.append(
                f'sources "{self.source.name}": path: {self.root} overlaps daemon.state_dir {self.state_dir}; '
                "the daemon must never write inside a watched folder"
            )
        return problems

    # -- staging ----------------------------------------------------------------------

    def stage(self, ctx: JobContext):
        if not self.root.is_dir():
            raise ConnectorError(Code.NOT_FOUND, f"drop folder {self.root} does not exist")
        paths = ctx.hint if ctx.hint is not None else self.scan()
        if self.options.after == "keep":
            yield from self._stage_kept(ctx, paths)
            return
        for path in paths:
            if ctx.stop.is_set():
                return
            yield self.describe(path)

    def _stage_kept(self, ctx: JobContext, paths):
        """Originals stay in place: those untouched since a job took them are not read again."""
        known = 0
        with Kept(ctx.source_state) as kept:
            for path in paths:
                if ctx.stop.is_set():
                    break
                event = self.describe(path)
                if isinstance(event, Staged):
                    now = snap(event.path)
                    if kept.unchanged(event.token, now):
                        known += 1
                        continue
                    event.token = (event.token, now)
                yield event
        if known:
            ctx.log.info("kept files unchanged since taken, not read again", files=known)

    def scan(self, start: Path | None = None):
        """Every candidate path (a str) under `start` (default: the root); symlinks are
        yielded too, for core to refuse, but never followed. Empty subfolders found on
        the way are pruned (see `_prune`)."""
        stack = [str(start or self.root)]
        skip = os.path.realpath(self.state_dir)
        ignored = self.options.ignored
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            if not entries:
                self._prune(folder)
            for entry in entries:
                if ignored(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if os.path.realpath(entry.path) != skip:
                        stack.append(entry.path)
                else:
                    yield entry.path

    def _prune(self, folder: str) -> None:
        """Remove an empty subfolder that nobody has touched for a while.

        Folders dropped in would otherwise pile up as empty skeletons once their files are
        taken, each one costing an inotify watch for ever. Only folders empty and unchanged
        for `EMPTY_FOLDER_GRACE` go, so a writer between its mkdir and its first file is
        left alone; rmdir itself refuses a folder that gained an entry meanwhile. With
        `after = "keep"` the folder's layout is the user's, and it is never touched.
        """
        if not self.options.remove_empty_folders or self.options.after == "keep" or folder == str(self.root):
            return
        try:
            if time.time() - os.lstat(folder).st_mtime >= EMPTY_FOLDER_GRACE:
                os.rmdir(folder)
        except OSError:
            pass  # gone already, not empty any more, or not ours to remove

    def describe(self, path):
        """The event for one path. Core opens the file itself (in its worker threads) and
        refuses symlinks, non-regular, empty and oversized files, so this stays cheap."""
        path = str(path)
        uri = file_uri(path)
        root = str(self.root)
        if not path.startswith(root + os.sep):
            return Failed(uri, Code.INVALID_NAME, "outside the drop folder", skip=True)
        rel = path[len(root) + 1:]
        return Staged(
            origin_uri=uri, path=path, name=os.path.basename(path), metadata={"relpath": display(rel)},
            max_size=self.options.max_file_size, allow_empty=False, token=rel,
        )

    # -- after the commit -------------------------------------------------------------

    def finish(self, ctx: JobContext, outcomes: list[Outcome], status: str) -> None:
        after = self.options.after
        if after == "keep":
            self._remember(ctx, outcomes)
            return
        mover = _Mover(self.state_dir, self.source.name, ctx)
        root = str(self.root)
        for out in outcomes:
            rel = out.event.token
            if rel is None:
                continue
            path = os.path.join(root, rel)
            if out.outcome in ("ingested", "unchanged"):
                if after == "move":
                    mover.move(path, rel, "processed")
                elif after == "delete":
                    unlink_quietly(path)
            elif out.code not in RETRY_LATER and out.code != Code.NOT_FOUND:
                target = mover.move(path, rel, "failed")
                if target is not None:
                    write_json(Path(target + ".error.json"),
                               {"job_id": ctx.job_id, "code": out.code.value, "message": out.message}, durable=False)

    def _remember(self, ctx: JobContext, outcomes: list[Outcome]) -> None:
        taken = [out.event.token for out in outcomes
                 if out.outcome in ("ingested", "unchanged") and isinstance(out.event.token, tuple)
                 and out.event.token[1] is not None]
        with Kept(ctx.source_state) as kept:
            kept.remember(taken)


class _Mover:
    """Moves originals out of the drop folder into `<area>/<source>/<job_id>/<rel>`.

    The job folder is created by us, inside the state directory, so sanitising each
    relative path is enough: no per-file realpath. Originals leave by link + unlink, not
    rename: inotify reports a rename out of a watched tree as a half move, and watchdog
    holds every later event for half a second waiting for its other half, which would
    delay the next dropped file by as much.
    """

    def __init__(self, state_dir: Path, source: str, ctx: JobContext):
        self.state_dir, self.source, self.ctx = str(state_dir), source, ctx
        self._folders: dict[tuple[str, str], str] = {}  # (area, relative folder) → made target folder

    def move(self, path: str, rel: str, area: str) -> str | None:
        try:
            target = os.path.join(self._folder(area, rel), safe_name(os.path.basename(rel)))
            _relocate(path, target)
            return target
        except FileNotFoundError:
            return None
        except (OSError, ConnectorError) as exc:
            self.ctx.log.warning("could not move file after ingest", path=display(path), area=area, error=str(exc))
            return None

    def _folder(self, area: str, rel: str) -> str:
        """The sanitised target folder for `rel`, made once per folder and job."""
        head = os.path.dirname(rel)
        key = (area, head)
        folder = self._folders.get(key)
        if folder is None:
            parts = safe_parts(rel.split(os.sep))[:-1]  # also refuses too deep a path
            folder = os.path.join(self.state_dir, area, self.source, self.ctx.job_id, *parts)
            os.makedirs(folder, exist_ok=True)
            self._folders[key] = folder
        return folder


def _relocate(path: str, target: str) -> None:
    try:
        os.link(path, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EXDEV:  # another filesystem: copy, then remove
            shutil.copy2(path, target, follow_symlinks=False)
        elif exc.errno in (errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
            os.rename(path, target)  # hard links refused here: a rename still moves it
            return
        else:
            raise
    os.unlink(path)


