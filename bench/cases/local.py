"""One-shot durable ingest of a drop folder, against the floor for the same bytes.

Small files: `cp -r` + `sync` (per-file filesystem work, made durable).
Large files: `openssl dgst -sha256` (hashing at the best speed the machine has). A
`cp -r` + `sync` column is added for the large corpus too, because ingestd's durable
copy of 512 MiB is bound by the disk, which openssl never touches.
"""

from __future__ import annotations

from .. import corpus as corpus_mod
from .. import ingest, measure
from ..context import Bench
from .common import REFERENCE, SUBJECT, Case, result, rounds

CP_SYNC = 'cp -r "$1" "$2" && sync'


def drop_folder_config(root, inbox, **options):
    """The corpus arrives hard-linked (see `corpus.link_tree`), which a drop folder refuses
    unless told those links are meant."""
    return ingest.write_config(root / "ingestd.toml", root / "state",
                               [{"name": "inbox", "kind": "local", "path": inbox, "hard_links": "ingest", **options}])


def oneshot_side(bench: Bench, corpus: corpus_mod.Corpus, label: str, flat: bool = False):
    """`ingestd ingest inbox`: a fresh store, the corpus hard-linked into the drop folder,
    `after = "move"` (the production default) unless --after says otherwise."""

    def side(i: int) -> dict:
        root = bench.scratch(f"{label}-ingestd")
        inbox = root / "inbox"
        corpus_mod.link_tree(corpus, inbox, flat=flat)
        config = drop_folder_config(root, inbox, after=bench.after)
        measure.sync()
        usage, manifest = ingest.ingest(config, "inbox", timeout=900 + 0.05 * len(corpus.files))
        taken = manifest["counters"]["ingested"] + manifest["counters"]["unchanged"]
        if taken != len(corpus.files):
            raise RuntimeError(f"ingestd took {taken} of {len(corpus.files)} files: {manifest['errors'][:3]}")
        return {**usage.as_dict(), "job_s": ingest.job_seconds(manifest),
                "files_per_s": round(len(corpus.files) / usage.wall_s, 1),
                "mib_per_s": round(corpus.total_bytes / 2**20 / usage.wall_s, 1)}

    return side


def empty_side(bench: Bench):
    """`ingestd ingest` of an empty drop folder: the fixed cost of one run (interpreter,
    imports, plugins, config, store) that every one-shot pays before its first file."""

    def side(i: int) -> dict:
        root = bench.scratch("oneshot-empty")
        (root / "inbox").mkdir()
        config = drop_folder_config(root, root / "inbox", after=bench.after)
        measure.sync()
        usage, manifest = ingest.ingest(config, "inbox")
        return {**usage.as_dict(), "job_s": ingest.job_seconds(manifest)}

    return side


def cp_sync_side(bench: Bench, corpus: corpus_mod.Corpus, label: str):
    def side(i: int) -> dict:
        dest = bench.scratch(f"{label}-cp") / "copy"
        measure.sync()
        done = measure.run(["sh", "-c", CP_SYNC, "sh", str(corpus.root), str(dest)])
        return {**done.usage.as_dict(), "files_per_s": round(len(corpus.files) / done.usage.wall_s, 1),
                "mib_per_s": round(corpus.total_bytes / 2**20 / done.usage.wall_s, 1)}

    return side


def openssl_side(bench: Bench, corpus: corpus_mod.Corpus):
    openssl = bench.tool("openssl").path

    def side(i: int) -> dict:
        measure.sync()
        done = measure.run([openssl, "dgst", "-sha256", *(str(corpus.path(rel)) for rel in corpus.files)])
        return {**done.usage.as_dict(), "mib_per_s": round(corpus.total_bytes / 2**20 / done.usage.wall_s, 1)}

    return side


def run_small(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("small")
    runs = rounds(bench, case, {SUBJECT: oneshot_side(bench, corpus, "oneshot-small"),
                                REFERENCE: cp_sync_side(bench, corpus, "oneshot-small"),
                                "ingestd_empty_folder": empty_side(bench)})
    return _result(case, runs, corpus, limit=1.5)


def run_large(bench: Bench, case: Case) -> dict:
    corpus = bench.corpus("large")
    if bench.tool("openssl").missing:
        raise RuntimeError(bench.tool("openssl").missing)
    runs = rounds(bench, case, {SUBJECT: oneshot_side(bench, corpus, "oneshot-large"),
                                REFERENCE: openssl_side(bench, corpus),
                                "cp_sync": cp_sync_side(bench, corpus, "oneshot-large")})
    return _result(case, runs, corpus, limit=1.2)


def _result(case: Case, runs: list[dict], corpus: corpus_mod.Corpus, limit: float) -> dict:
    res = result(case, runs, met=None, files=len(corpus.files), mib=round(corpus.total_bytes / 2**20, 1))
    res["met"] = res["ratio"] is not None and res["ratio"] <= limit
    return res


SMALL = Case("oneshot-small", "one-shot durable ingest, small corpus", "`cp -r` + `sync`", "<= 1.5x", run_small)
LARGE = Case("oneshot-large", "one-shot durable ingest, large corpus", "`openssl dgst -sha256`", "<= 1.2x", run_large)
