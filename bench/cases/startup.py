"""What a one-shot costs before its first file: `ingestd ingest` of an empty drop folder
against the bare interpreter it runs on (`python -c pass`). Beside the rounds, one run
with `PYTHONPROFILEIMPORTTIME=1` says which packages the start-up spends its time importing.
"""

from __future__ import annotations

from collections import Counter

from .. import ingest, measure
from ..context import Bench
from .common import REFERENCE, SUBJECT, Case, check, result, rounds
from .local import drop_folder_config, empty_side

LIMIT_S = 0.15
# What the design mandates before any of ingestd's own code runs: pydantic (config and
# manifests), structlog (the logs), pluggy and importlib.metadata (plugins by entry point;
# pydantic imports the latter anyway, to look for its own plugins).
MANDATED = "import importlib.metadata, pluggy, pydantic, structlog"


def interpreter() -> str:
    """The Python that runs ingestd: the console script's own (its #! line), or ours."""
    if ingest.INSTALLED:
        with open(ingest.INSTALLED, "rb") as fh:
            first = fh.readline().decode(errors="replace")
        if first.startswith("#!"):
            return first[2:].strip().split()[0]
    return ingest.PYTHON


def bare_side(bench: Bench):
    python = interpreter()

    def side(i: int) -> dict:
        return measure.run([python, "-c", "pass"]).usage.as_dict()

    return side


def mandated_side(bench: Bench):
    """The floor under the target: importing the libraries ingestd is built on, nothing of its own."""
    python = interpreter()

    def side(i: int) -> dict:
        return measure.run([python, "-c", MANDATED]).usage.as_dict()

    return side


def import_profile(bench: Bench, top: int = 12) -> dict[str, float]:
    """Milliseconds of import time per top-level package (each module's own time, summed)."""
    root = bench.scratch("startup-imports")
    (root / "inbox").mkdir()
    config = drop_folder_config(root, root / "inbox")
    done = measure.run(ingest.command("ingest", "inbox", "--json", "--config", str(config)),
                       env={**ingest.env(), "PYTHONPROFILEIMPORTTIME": "1"}, cwd=ingest.ROOT, check=False)
    own: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        own[fields[2].strip().split(".")[0]] += int(fields[0]) / 1000
    total = sum(own.values())
    out = {name: round(ms, 1) for name, ms in own.most_common(top)}
    out["(all imports)"] = round(total, 1)
    return out


def run_startup(bench: Bench, case: Case) -> dict:
    runs = rounds(bench, case, {SUBJECT: empty_side(bench), REFERENCE: bare_side(bench),
                                "mandated_imports": mandated_side(bench)})
    imports = import_profile(bench)
    res = result(case, runs, met=None, imports_ms=imports, interpreter=interpreter(), job_only=False)
    wall = res["summary"][SUBJECT]["wall_s"]
    res["checks"] = [check("empty one-shot wall time", wall, LIMIT_S, unit="s")]
    res["met"] = res["checks"][0]["met"]
    shown = ", ".join(f"{name} {ms:.0f}" for name, ms in imports.items())
    res["notes"].append(f"import time by top-level package (ms, own time of its modules, one run with "
                        f"PYTHONPROFILEIMPORTTIME=1, which inflates it): {shown}")
    res["notes"].append(f"the bare interpreter: {interpreter()} -c pass")
    floor = res["summary"]["mandated_imports"]
    res["notes"].append(f"mandated_imports: `python -c '{MANDATED}'`, the libraries the design requires and "
                        f"nothing of ingestd's: {floor['wall_s']:.3f} s, {floor['cpu_s']:.3f} CPU-s")
    return res


STARTUP = Case("startup", "start-up: `ingestd ingest` of an empty drop folder", "the bare interpreter, "
               "`python -c pass`", f"<= {LIMIT_S} s", run_startup)
