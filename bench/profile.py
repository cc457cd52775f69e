"""Where ingestd's time goes in a case, with py-spy (which samples every thread, unlike
cProfile, which sees only the main thread and would miss the enrich workers).

    python -m bench.profile oneshot-small            one-shot ingest of the small corpus
    python -m bench.profile oneshot-large
    python -m bench.profile burst                    attach to the daemon during a burst
    python -m bench.profile s3-first-small           (also s3-noop, s3-first-large)
    python -m bench.profile oneshot-small --idle     wall-clock view: waits (fsync, locks) too
    python -m bench.profile s3-first-small --gil     only the thread holding the GIL: Python's CPU

It prints the functions with the most samples on top of the stack (self) and on the stack
at all (inclusive). py-spy is not a dependency of ingestd: `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from . import corpus as corpus_mod
from . import ingest, measure
from .cases.drop import wait_burst
from .cases.local import drop_folder_config
from .cases.s3 import SOURCE, Tools
from .context import Bench
from .daemon import Daemon

RATE = 250  # samples per second


def aggregate(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own, incl, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        total += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"{total} samples ({total / RATE:.2f} s of thread time)", "", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in incl.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py:123)`; drop the thread frames."""
    if frame.startswith(("process ", "thread ")):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    return f"{name} ({Path(path).name}:{line})" if path else name


MODE: list[str] = []  # extra py-spy flags: --idle (waits too) or --gil (only the thread holding the GIL)


def record(argv: list[str], out: Path, idle: bool) -> None:
    spy = _py_spy()
    cmd = [spy, "record", "-r", str(RATE), "-f", "raw", "-o", str(out), "--nonblocking", *MODE]
    if idle:
        cmd.append("--idle")
    subprocess.run(cmd + ["--", *argv], check=True, stdout=subprocess.DEVNULL, env=ingest.env(), cwd=ingest.ROOT)


def attach(pid: int, out: Path, idle: bool) -> subprocess.Popen:
    spy = _py_spy()
    cmd = [spy, "record", "-r", str(RATE), "-f", "raw", "-o", str(out), "--pid", str(pid), "--nonblocking", *MODE]
    if idle:
        cmd.append("--idle")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _py_spy() -> str:
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy not found; install it with: pip install py-spy")
    return spy


# -- the profiled runs -------------------------------------------------------------------


def oneshot(bench: Bench, name: str, out: Path, idle: bool) -> None:
    corpus = bench.corpus(name)
    root = bench.scratch("profile")
    corpus_mod.link_tree(corpus, root / "inbox")
    config = drop_folder_config(root, root / "inbox")
    measure.sync()
    record(ingest.command("ingest", "inbox", "--json", "--config", str(config)), out, idle)


def burst(bench: Bench, out: Path, idle: bool) -> None:
    corpus = bench.corpus("small")
    root = bench.scratch("profile")
    (root / "inbox").mkdir()
    corpus_mod.link_tree(corpus, root / "staging")
    with Daemon(drop_folder_config(root, root / "inbox"), root / "state", root) as daemon:
        measure.sync()
        spy = attach(daemon.pid, out, idle)
        time.sleep(1.0)  # py-spy needs a moment to attach before the burst starts
        for entry in sorted((root / "staging").iterdir()):
            entry.rename(root / "inbox" / entry.name)
        wait_burst(daemon, len(corpus.files), timeout=300)
        daemon.stop()
        spy.wait(timeout=30)


def s3(bench: Bench, case: str, out: Path, idle: bool) -> None:
    from .cases.s3 import bucket

    large = case == "s3-first-large"
    name = bucket(bench, "bench-large" if large else "bench-small", "large" if large else "small")
    tools = Tools(bench, name)
    root = bench.scratch("profile")
    if case == "s3-noop":
        tools.ingestd(root)  # the first sync, not profiled
    else:
        tools.ingestd(root)
        shutil.rmtree(root / "state")
    measure.sync()
    record(ingest.command("ingest", SOURCE, "--json", "--config", str(root / "ingestd.toml")),
           out, idle)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=["oneshot-small", "oneshot-large", "burst", "s3-first-small", "s3-noop",
                                    "s3-first-large"])
    p.add_argument("--idle", action="store_true", help="count waiting threads too (wall-clock view)")
    p.add_argument("--gil", action="store_true", help="only the thread holding the GIL (where Python CPU goes)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--smoke", action="store_true", help="tiny corpora")
    p.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here (for flame graphs)")
    args = p.parse_args(argv)
    if args.gil:
        MODE.append("--gil")
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-profile-"))
    bench = Bench(workdir, runs=1, warmup=0, smoke=args.smoke)
    out = args.raw or workdir / "stacks.txt"
    try:
        if args.case.startswith("oneshot-"):
            oneshot(bench, args.case.split("-")[1], out, args.idle)
        elif args.case == "burst":
            burst(bench, out, args.idle)
        else:
            s3(bench, args.case, out, args.idle)
        print(aggregate(out, args.top))
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
