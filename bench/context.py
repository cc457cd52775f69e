"""What every case shares within one invocation: the work directory, the corpora (built
once, lazily), the S3 server (started once, lazily), the tools found, and the run count."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from . import corpus, measure, tools


class Bench:
    def __init__(self, workdir: Path, *, runs: int, warmup: int, smoke: bool, quiet: bool = False,
                 after: str = "move"):
        self.workdir = workdir
        self.after = after  # what the drop-folder cases do with originals
        self.runs = runs
        self.warmup = warmup
        self.smoke = smoke
        self.quiet = quiet
        self.tools = tools.find_all()
        self._corpora: dict[str, corpus.Corpus] = {}
        self.buckets: dict[str, str] = {}  # bucket → corpus it was filled with, once per invocation
        self.made: dict[str, object] = {}  # other fixtures a case builds once per invocation
        self._s3 = None
        self._started = time.monotonic()

    # -- shared fixtures ----------------------------------------------------------------

    def corpus(self, name: str) -> corpus.Corpus:
        if name not in self._corpora:
            specs = {"small": corpus.SMOKE_SMALL if self.smoke else corpus.SMALL,
                     "large": corpus.SMOKE_LARGE if self.smoke else corpus.LARGE}
            self.log(f"generating the {name} corpus")
            self._corpora[name] = corpus.build(specs[name], self.workdir / "corpus" / name)
        return self._corpora[name]

    def drop_corpus(self, files: int, folders: int | None = None, **sizes) -> corpus.Corpus:
        """A drop corpus (issue 20) of `files` files, built once per invocation."""
        spec = corpus.drop_spec(files, folders, **sizes)
        if spec.name not in self._corpora:
            self.log(f"generating a corpus of {files:,} files in {spec.folders:,} folders")
            self._corpora[spec.name] = corpus.build(spec, self.workdir / "corpus" / spec.name)
        return self._corpora[spec.name]

    def s3(self):
        if self._s3 is None:
            from .s3server import S3Server

            self._s3 = S3Server(self.workdir / "moto").start()
        return self._s3

    def s3_cpu_s(self) -> float:
        """CPU the S3 server has used so far (0 when it is not running)."""
        if self._s3 is None or self._s3.proc is None or self._s3.proc.poll() is not None:
            return 0.0
        return measure.cpu_seconds(self._s3.pid)

    def scratch(self, name: str) -> Path:
        """A fresh, empty directory; whatever an earlier run left there is removed first."""
        path = self.workdir / "scratch" / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def tool(self, name: str) -> tools.Tool:
        return self.tools[name]

    # -- progress -----------------------------------------------------------------------

    def log(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self._started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None
