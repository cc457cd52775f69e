"""Command line: parse arguments, run one command, map errors to exit codes.

The only module that prints, and everything it prints about a failure passes the same
masking as the log. Exit status: 0 ok, 1 job partial/failed or not found, 2 usage, 3 the
state needs `ingestd migrate` (read-only commands, `migrate --check`), 65 the state is
damaged (a `documents.sqlite` that is not a database; EX_DATAERR), 75 the state is busy
(another process holds it while a migration is due), 76 the state is newer than this
ingestd, 78 configuration (EX_CONFIG); systemd is told not to restart on 65, 76 and 78;
128+N a one-shot stopped by signal N.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ingestd import __version__, app, config as config_mod
from ingestd._lib import logs, redact
from ingestd._lib.paths import is_valid_id
from ingestd.console import follow, summary
from ingestd.console.line import LiveLines
from ingestd.errors import (
    Code, ConfigError, IngestdError, MigrationPending, NotFoundError, SchemaTooNew, UsageError,
)
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.manifest import Manifest
from ingestd.plugin.manager import Plugins
from ingestd.runtime import systemd
from ingestd.state import chains as state_chains, runner as state_runner

if TYPE_CHECKING:
    from ingestd.api.models import JobsQuery


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (default: $INGESTD_CONFIG, else /etc/ingestd/ingestd.toml)")
    parser = argparse.ArgumentParser(prog="ingestd", parents=[common], description="Ingest documents from drop folders, S3 and SharePoint.")
    parser.add_argument("--version", action="version", version=f"ingestd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # on the subcommands only: a top-level copy would be reset by the subcommand's defaults
    talk = argparse.ArgumentParser(add_help=False)
    level = talk.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="count", default=0,
                       help="log to stderr at info (-v) or debug (-vv); a terminal otherwise shows warnings only")
    level.add_argument("-q", "--quiet", action="store_true", help="no progress line: only the summary and errors")

    sub.add_parser("run", parents=[common], help="run the daemon (watch, schedule, serve HTTP)")
    p = sub.add_parser("ingest", parents=[common, talk], help="run one job for a source now, in the foreground")
    p.add_argument("source")
    p.add_argument("--json", action="store_true")
    sub.add_parser("check-config", parents=[common], help="validate the config file and its credential references")
    p = sub.add_parser("status", parents=[common, talk], help="show one job's manifest")
    p.add_argument("job_id")
    p.add_argument("--items", action="store_true", help="also list the items: outcome, document id, origin, error")
    p.add_argument("--follow", action="store_true",
                   help="until the job ends: a live progress line on a terminal, then the summary")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("jobs", parents=[common, talk], help="list jobs, newest first")
    p.add_argument("--source")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "partial", "failed"])
    p.add_argument("--limit", type=int, default=20, help="1-500 (default 20), as the API's /jobs")
    p.add_argument("--before", metavar="JOB_ID", help="only jobs older than this one (the next page)")
    p.add_argument("--follow", action="store_true",
                   help="a live line per running or queued job until none is left, a summary as each ends")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("document", parents=[common], help="show a document's record, provenance and versions")
    p.add_argument("doc_id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("documents", parents=[common], help="list documents (current versions), in a stable order")
    p.add_argument("--source")
    p.add_argument("--include-deleted", action="store_true", help="list tombstoned documents too")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = sub.add_parser("cat", parents=[common], help="write a document's content to stdout")
    p.add_argument("doc_id")
    p.add_argument("--version", type=int, metavar="N", help="an earlier version (its number), e.g. of a deleted document")
    p = sub.add_parser("changes", parents=[common], help="the change feed, oldest first")
    p.add_argument("--after", metavar="CURSOR", help="only changes after this cursor (default: from the first)")
    p.add_argument("--follow", action="store_true", help="keep waiting for new changes (Ctrl-C to stop)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = sub.add_parser("sinks", parents=[common], help="list sinks: cursor, lag, state, last error")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    r = actions.add_parser("reset", parents=[common], help="deliver again from a cursor (replay)")
    r.add_argument("name")
    r.add_argument("--to", required=True, metavar="CURSOR",
                   help="a change's cursor; 0000000000000000 replays the whole feed")
    p = sub.add_parser("text", parents=[common], help="print a document's text (Markdown), or why there is none")
    p.add_argument("doc_id")
    p.add_argument("--json", action="store_true", help="the text's record (extractor, version, parts, error) instead")
    p = sub.add_parser("reextract", parents=[common],
                       help="extract what the installed extractors have not (new versions, new sources), now")
    p.add_argument("--extractor", metavar="NAME", help="only this extractor's MIME types")
    p.add_argument("--failed", action="store_true", help="also try again files that failed (e.g. after raising a limit)")
    p = sub.add_parser("plugins", parents=[common], help="list plugins, connector kinds, extractors and sink kinds")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("verify", parents=[common], help="check every blob against its name and every record against its blob")
    p.add_argument("--repair", action="store_true", help="quarantine bad blobs and mark the documents they belong to")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("migrate", parents=[common], help="bring the state up to this version's schema")
    p.add_argument("--check", action="store_true", help="only say what would change (exit 3 if anything would)")
    p = sub.add_parser("cluster", parents=[common], help="cluster mode: the shared database and blob store")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("init", parents=[common], help="create or migrate the cluster database's schema")
    a.add_argument("--check", action="store_true", help="only say what would change (exit 3 if anything would)")
    a = actions.add_parser("status", parents=[common], help="instances, leases and lag")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("ingest", parents=[common], help="queue a job for a source (any instance runs it)")
    a.add_argument("source")
    a = actions.add_parser("job", parents=[common], help="one job's manifest, from the database")
    a.add_argument("job_id")
    a = actions.add_parser("import", parents=[common], help="move an embedded store into the cluster (resumable)")
    a.add_argument("--from", dest="from_dir", required=True, type=Path, metavar="STATE_DIR",
                   help="the embedded daemon's state directory (stop that daemon first; it is only read)")
    a.add_argument("--batch", type=int, default=500, help=argparse.SUPPRESS)
    a = actions.add_parser("verify", parents=[common], help="every version's blob in the blob store, with its size")
    a.add_argument("--deep", action="store_true", help="also read every blob and check its hash")
    a.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    logs.setup()  # JSON on stderr until the config says otherwise: stdout is for results only
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for line in exc.lines:
            _complain(line)
        return exc.exit_code
    except NotFoundError as exc:
        _complain(f"ingestd: {exc}")
        return 1
    except IngestdError as exc:
        _complain(f"ingestd: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _complain(line: str) -> None:
    print(redact.scrub_text(line), file=sys.stderr)


def _setup(args, *, quiet: bool = False, person: bool = False, stream=None):
    """Config and plugins, and the logs as this command's reader wants them. `person`: a
    one-shot command, whose logs on a terminal are readable lines at warning and above
    (-v, -vv for more): per-document records would bury the progress line and the
    summary. Off a terminal (cron, pipes, systemd) they stay the configured JSON."""
    plugins = Plugins().load()
    cfg = app.load_config(config_mod.locate(args.config), plugins)
    on_terminal = person and sys.stderr.isatty()
    level = "warning" if quiet or on_terminal else cfg.daemon.log_level
    logs.setup(level=_level(args, level), fmt="console" if on_terminal else cfg.daemon.log_format, stream=stream,
               documents=not on_terminal or getattr(args, "verbose", 0) > 0)
    return cfg, plugins


def _level(args, default: str) -> str:
    verbose = getattr(args, "verbose", 0)
    if verbose:
        return "debug" if verbose > 1 else "info"
    return "error" if getattr(args, "quiet", False) else default


def _live_lines(args) -> LiveLines | None:
    """The progress line's place, when a person watches stderr and did not ask for quiet."""
    if args.quiet or not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return None
    return LiveLines(sys.stderr)


def cmd_run(args) -> int:
    from ingestd.daemon import run_daemon

    cfg, plugins = _setup(args)
    if cfg.cluster is not None:  # opt-in: the embedded daemon below is untouched without it
        from ingestd.cluster.node import Node
        from ingestd.cluster_api import serve

        from ingestd.runtime.watch import Watcher

        return Node(cfg, plugins, ready=systemd.ready, http=serve if cfg.http.enabled else None,
                    watcher=Watcher).run()
    return run_daemon(cfg, plugins, config_mod.locate(args.config))


def cmd_ingest(args) -> int:
    """One job now, in the foreground. SIGINT or SIGTERM stops it as the daemon's shutdown
    would: the job ends `failed`/`interrupted`, its workspace is removed, and the exit
    status is 128 + the signal's number (a second signal kills the process outright)."""
    lines = _live_lines(args)
    cfg, plugins = _setup(args, quiet=args.json, person=True, stream=lines)
    if cfg.source(args.source) is None:
        known = ", ".join(s.name for s in cfg.sources) or "none"
        raise UsageError(f"unknown source {args.source!r} (configured: {known})")
    application = app.App(cfg, plugins)  # the state is migrated before any connector looks at it
    try:
        found = app.findings(cfg, plugins, only=args.source)
        for line in found.warnings:
            _complain(line)
        if found.problems:  # what `run` would refuse to start, `ingest` refuses to run
            raise ConfigError(found.problems[args.source])
        stopped = _stop_on_signals()
        application.jobs.load_all()
        with follow.drawing(lambda: application.lifecycle.live(args.source), lines):
            manifest = application.run_job(args.source, "cli", stop=stopped.event)
    finally:
        application.close()
    _print_outcome(manifest, args, cfg)
    if stopped.signum and any(e.code == Code.INTERRUPTED for e in manifest.errors):
        return 128 + stopped.signum
    return _job_exit(manifest)


def _job_exit(m: Manifest) -> int:
    return 0 if m.status == "succeeded" else 1


def _print_outcome(m: Manifest, args, cfg) -> None:
    """A finished job for whoever asked: its manifest as JSON, else the human summary."""
    if args.json:
        _print_manifest(m, True)
        return
    for line in summary.summary(m, cfg.daemon.state_dir, args.config):
        print(line)


class _Stop:
    def __init__(self):
        self.event = threading.Event()
        self.signum = 0

    def __call__(self, signum, _frame) -> None:
        self.signum = signum
        self.event.set()
        for sig in (signal.SIGINT, signal.SIGTERM):  # the next one is not asked twice
            signal.signal(sig, signal.SIG_DFL)


def _stop_on_signals() -> _Stop:
    stop = _Stop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    return stop


def cmd_check_config(args) -> int:
    plugins = Plugins().load()
    cfg = app.load_config(config_mod.locate(args.config), plugins)
    found = app.findings(cfg, plugins)
    for line in found.warnings:  # e.g. a certificate close to expiry: worth knowing, not fatal
        _complain(line)
    problems = [line for lines in found.problems.values() for line in lines] + app.check_state(cfg)
    if problems:
        raise ConfigError(problems)
    print("ok")
    return 0


def _read_only(cfg, plugins) -> state_runner.Opened:
    """The state as read-only commands open it: never migrated (see `ingestd.state.runner`)."""
    state_dir = cfg.daemon.state_dir
    return state_runner.open_state(state_dir, state_chains.chains(state_dir, cfg.sources, plugins.connectors),
                                   write=False)


@contextmanager
def _jobs(args, stream=None):
    cfg, plugins = _setup(args, quiet=True, person=True, stream=stream)
    state = _read_only(cfg, plugins)
    try:
        yield JobStore(cfg.daemon.state_dir), cfg
    finally:
        state.close()


def cmd_status(args) -> int:
    if not is_valid_id(args.job_id):
        raise UsageError(f"malformed job id {args.job_id[:80]!r}")
    lines = _live_lines(args) if args.follow else None
    with _jobs(args, stream=lines) as (store, cfg):
        if args.follow:
            final = follow.follow_job(_feed(cfg), args.job_id, lines)
            if not args.items and not args.json:
                _print_outcome(final, args, cfg)
                return _job_exit(final)
        manifest = store.get(args.job_id)  # the record itself: what --json and --items print
        if not args.items:
            _print_manifest(manifest, args.json)
            return _job_exit(manifest) if args.follow else 0
        items = _items(store.items_path(manifest))
        if args.json:
            print(json.dumps({**manifest.to_json(), "items": list(items)}, indent=2, ensure_ascii=False))
            return 0
        _print_manifest(manifest, False)
        for item in items:
            error = f"  {item['error']}: {item.get('message', '')}" if item.get("error") else ""
            print(f"{item['outcome']}  {item.get('doc_id') or '-'}  {item['origin_uri']}{error}")
    return _job_exit(manifest) if args.follow else 0


def _items(path):
    """Every outcome in a job's items file, a page at a time (a job may have a million)."""
    from ingestd.jobs.items import read_page

    offset, more = 0, True
    while more:
        records, offset, more = read_page(path, offset, 1000)
        yield from records


def cmd_jobs(args) -> int:
    query = _jobs_query(args)
    if args.follow:
        return _follow_jobs(args, query)
    with _jobs(args) as (store, _):
        store.load_all()
        rows = store.list(source=query.source, status=query.status, limit=query.limit, before=query.before)
    if args.json:
        print(json.dumps([m.to_json() for m in rows], indent=2))
        return 0
    for m in rows:
        c = m.counters
        print(f"{m.job_id}  {m.source:<16} {m.status:<9} {m.trigger:<8} "
              f"ingested={c.ingested} unchanged={c.unchanged} failed={c.failed} skipped={c.skipped} deleted={c.deleted}")
    return 0


def _follow_jobs(args, query: JobsQuery) -> int:
    lines = _live_lines(args)
    with _jobs(args, stream=lines) as (_, cfg):
        def ended(m: Manifest) -> None:
            if args.json:  # one line per job as it ends (JSON Lines): a reader need not wait for the last
                print(json.dumps(m.to_json(), ensure_ascii=False), flush=True)
                return
            for line in summary.summary(m, cfg.daemon.state_dir, args.config):
                print(line, flush=True)

        if not follow.follow_jobs(_feed(cfg), query.source, lines, ended) and not args.json:
            print("no job is running or queued" + (f" for source {query.source}" if query.source else ""))
    return 0


def _feed(cfg):
    from ingestd.console import feeds  # only when following: http.client and friends

    return feeds.feed(cfg)


def _jobs_query(args) -> JobsQuery:
    """The API's own model for `GET /jobs`, so `--limit 0` is refused here as it is there
    (imported here: the API's models cost every other command's start-up ~10 ms)."""
    from ingestd.api.models import JobsQuery

    try:
        return JobsQuery(source=args.source, status=args.status, limit=args.limit, before=args.before)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        option = "--" + str(err["loc"][0]) if err["loc"] else "arguments"
        message = err["msg"].removeprefix("Value error, ")
        raise UsageError(f"{option}: {message[:1].lower() + message[1:]}") from None


def cmd_document(args) -> int:
    from ingestd.store.catalogue import Store

    if not is_valid_id(args.doc_id):
        raise UsageError(f"malformed document id {args.doc_id[:80]!r}")
    cfg, plugins = _setup(args, quiet=True)
    _not_in_cluster(cfg, args)
    state = _read_only(cfg, plugins)
    store = Store(cfg.daemon.state_dir)
    try:
        doc = store.get(args.doc_id)
    finally:
        store.close()
        state.close()
    if args.json:
        print(doc.model_dump_json(indent=2))
        return 0
    print(f"{doc.doc_id}  {doc.origin_uri}")
    print(f"  source {doc.source}  version {doc.version} ({doc.kind})  job {doc.job_id}  ingested {doc.ingested_at}")
    print(f"  sha256 {doc.sha256}  size {doc.size}  mime {doc.mime}")
    if doc.deleted_at:
        print(f"  deleted at {doc.deleted_at} by job {doc.deleted_job}")
    if doc.damaged:
        print(f"  DAMAGED: {doc.damaged} (store the same bytes again to mend it)")
    for v in doc.versions:
        print(f"  earlier: v{v.version} ({v.kind}) {v.ingested_at} sha256 {v.sha256} size {v.size} job {v.job_id}")
    return 0


def _not_in_cluster(cfg, args) -> None:
    """In cluster mode the local state dir holds no catalogue: an empty answer would mislead."""
    if cfg.cluster is not None:
        raise UsageError(f"ingestd {args.command}: in cluster mode the documents and the change feed live in "
                         "PostgreSQL and the blob store; ask any instance's API (GET /documents, "
                         "/documents/{id}/content, /changes)")


@contextmanager
def _store(args):
    """The catalogue, read-only, with the state held shared (never migrated) meanwhile."""
    cfg, plugins = _setup(args, quiet=True)
    _not_in_cluster(cfg, args)
    with _opened_store(cfg, plugins) as store:
        yield cfg, store


@contextmanager
def _opened_store(cfg, plugins):
    from ingestd.store.catalogue import Store

    state = _read_only(cfg, plugins)
    try:
        store = Store(cfg.daemon.state_dir)
        try:
            yield store
        finally:
            store.close()
    finally:
        state.close()


def cmd_documents(args) -> int:
    with _store(args) as (_, store):
        after, cursor = None, None
        while True:
            page = store.list(source=args.source, include_deleted=args.include_deleted, limit=500, after=after,
                              feed_cursor=cursor)
            for doc in page.documents:
                _print_listed(doc, args.json)
            after, cursor = page.after, page.feed_cursor
            if after is None:
                break
    if not args.json:
        print(f"# follow on with: ingestd changes --after {cursor}", file=sys.stderr)
    return 0


def _print_listed(doc, as_json: bool) -> None:
    if as_json:
        print(doc.model_dump_json(exclude={"versions"}))
        return
    gone = "  (deleted)" if doc.deleted_at else ""
    print(f"{doc.doc_id}  {doc.source:<16} v{doc.version:<3} {doc.size:>12}  {doc.mime:<24} {doc.origin_uri}{gone}")


def cmd_cat(args) -> int:
    import shutil

    if not is_valid_id(args.doc_id):
        raise UsageError(f"malformed document id {args.doc_id[:80]!r}")
    with _store(args) as (_, store):
        content = store.content(args.doc_id, args.version)
    try:
        with open(content.path, "rb") as src:
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    except FileNotFoundError:
        raise IngestdError(f"the content of {args.doc_id} version {content.version} is missing from the blob "
                           f"store ({content.sha256}); run `ingestd verify`") from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the reader left: nothing to flush
    return 0


def cmd_changes(args) -> int:
    from ingestd import follow

    with _store(args) as (cfg, store):
        for change in follow.changes(store, cfg, args.after, follow=args.follow):
            if args.json:
                print(json.dumps(change.as_dict(), ensure_ascii=False), flush=args.follow)
            else:
                print(f"{change.cursor}  {change.type:<8} {change.doc_id}  {change.source:<16} v{change.version:<3} "
                      f"{change.sha256[:12]}  {change.origin_uri}", flush=args.follow)
    return 0


def cmd_sinks(args) -> int:
    """With a daemon running on this state directory, ask its API (a reset then takes
    effect at once, safely between two batches); without one, read and write the sinks'
    cursor files, which the next start takes up."""
    from ingestd import sinks_cmd

    cfg, plugins = _setup(args, quiet=True)
    if args.action == "reset":
        view = sinks_cmd.reset(cfg, lambda: _opened_store(cfg, plugins), args.name, args.to)
        print(f"sink {view['name']}: cursor {view['cursor']} ({view['state']}); it delivers again from there")
        return 0
    for view in sinks_cmd.listing(cfg, lambda: _opened_store(cfg, plugins)):
        if args.json:
            print(json.dumps(view, ensure_ascii=False))
            continue
        error = view["last_error"]
        print(f"{view['name']:<16} {view['kind']:<10} {view['state']:<11} cursor {view['cursor'] or '-'}  "
              f"lag {view['lag'] if view['lag'] is not None else '-'}"
              + (f"  last error: {error['code']}: {error['message']}" if error else ""))
    return 0


def cmd_verify(args) -> int:
    from ingestd.store.catalogue import Store
    from ingestd.store.verify import FileBlobs, verify

    cfg, plugins = _setup(args, quiet=True)
    if cfg.cluster is not None:  # the store is the cluster's: every blob on S3 read and hashed, as here on disk
        if args.repair:
            raise UsageError("--repair is for an embedded store; a cluster's blobs are mended on S3 (see docs/cluster.md)")
        from ingestd.cluster import verify as cluster_verify

        lines, code = cluster_verify.command(cfg, deep=True, as_json=args.json)
        print("\n".join(lines))
        return code
    state_dir = cfg.daemon.state_dir
    # a plain check only reads; a repair writes, so it brings an older state forward first, as `ingest` does
    state = state_runner.open_state(state_dir, state_chains.chains(state_dir, cfg.sources, plugins.connectors),
                                    write=args.repair)
    try:
        store = Store(state_dir)
        try:
            report = verify(FileBlobs(store.blobs), store, repair=args.repair)
        finally:
            store.close()
    finally:
        state.close()
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0 if report.ok else 1
    print(f"checked {report.blobs} blobs ({report.bytes} bytes) and {report.versions} versions: "
          f"{len(report.findings) or 'no'} problem(s)" + (f"; {report.unreferenced} blobs no record names" if report.unreferenced else ""))
    for f in report.findings:
        docs = f"  documents: {', '.join(f.documents[:5])}" + (f" and {len(f.documents) - 5} more" if len(f.documents) > 5 else "") if f.documents else ""
        print(f"{f.problem} {f.sha256 or ''} {f.detail}{docs}" + (f"  [repair: {f.repair}]" if f.repair else ""))
    if report.findings and not args.repair:
        print("run `ingestd verify --repair` to quarantine bad blobs and mark what they affect")
    return 0 if report.ok else 1


def cmd_text(args) -> int:
    from ingestd.api.models import TextInfo
    from ingestd.extract.lookup import text_state
    from ingestd.extract.policy import Policy
    from ingestd.store.catalogue import Store
    from ingestd.store.texts import Texts

    if not is_valid_id(args.doc_id):
        raise UsageError(f"malformed document id {args.doc_id[:80]!r}")
    cfg, plugins = _setup(args, quiet=True)
    state = _read_only(cfg, plugins)
    store, texts = Store(cfg.daemon.state_dir), Texts(cfg.daemon.state_dir, write=False)
    try:
        doc = store.get(args.doc_id)
        text = text_state(doc, texts, Policy(plugins.extractors, cfg), store)
    finally:
        texts.close()
        store.close()
        state.close()
    if args.json:
        print(TextInfo.of(doc.doc_id, text).model_dump_json(indent=2, by_alias=True))
        return 0
    if text.state != "extracted":
        why = {"pending": "queued for extraction (the daemon extracts it; `ingestd reextract` does it now)",
               "not_extracted": f"not extracted: {text.reason}",
               "failed": f"extraction failed: {text.record.status if text.record else ''}: "
                         f"{text.record.message if text.record else ''}"}[text.state]
        print(f"ingestd: {args.doc_id}: {why}", file=sys.stderr)
        return 1
    with open(text.path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0


def cmd_reextract(args) -> int:
    from ingestd.extract.policy import Policy
    from ingestd.extract.service import Extraction

    cfg, plugins = _setup(args, quiet=True)
    application = app.App(cfg, plugins)
    try:
        policy = Policy(plugins.extractors, cfg)
        chosen = [cls for name, cls in sorted(policy.extractors.items()) if args.extractor in (None, name)]
        if args.extractor and not chosen:
            known = ", ".join(sorted(policy.extractors)) or "none installed"
            raise UsageError(f"no available extractor {args.extractor!r} (available: {known})")
        if not policy.enabled:
            raise UsageError("extraction is off ([extract] enabled = false) or no extractor is installed")
        extraction = Extraction(application.store, application.texts, policy, cfg.extract)
        extraction.start(feed=False)
        try:
            for cls in chosen:
                if args.failed:
                    application.texts.forget_failures(cls.name)
                queued = extraction.backfill(cls)
                done = extraction.snapshot().done
                outcome = ", ".join(f"{status} {n}" for (name, status), n in sorted(done.items()) if name == cls.name)
                print(f"{cls.name} {cls.version}: {queued} file(s) extracted" + (f" ({outcome})" if outcome else ""))
        finally:
            extraction.stop()
    finally:
        application.close()
    return 0


def cmd_plugins(args) -> int:
    plugins = Plugins().load()
    rows = [_plugin_row(plugins, info) for info in plugins.info.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<12} {row['version'] or '-':<8} {row['status']}" + (f": {row['error']}" if row["error"] else ""))
        for k in row["connectors"]:
            state = "available" if k["available"] else f"unavailable ({k['remediation']})"
            print(f"  connector {k['kind']}: {state}" + (f" - {k['description']}" if k["description"] else ""))
        for e in row["extractors"]:
            state = "available" if e["available"] else f"unavailable ({e['remediation']})"
            print(f"  extractor {e['name']} {e['version']}: {state}; {', '.join(e['mime_types'])}")
        for kind in row["sinks"]:
            print(f"  sink {kind}")
    return 0


def _plugin_row(plugins: Plugins, info) -> dict:
    kinds = [{"kind": kind, "available": reason is None, "remediation": reason,
              "description": plugins.connectors[kind].description or None}
             for kind in info.kinds for reason in [plugins.unavailable(kind)]]
    kinds += [{"kind": kind, "available": False, "remediation": reason, "description": None}
              for kind, reason in info.refused.items()]
    return {"name": info.name, "module": info.module, "version": info.version,
            "status": info.status, "error": info.error, "connectors": kinds, "extractors": _extractor_rows(plugins, info),
            "sinks": info.sink_kinds}


def _extractor_rows(plugins: Plugins, info) -> list[dict]:
    rows = []
    for name in info.extractors:
        cls = plugins.extractors.get(name)
        if cls is not None:
            reason = cls.unavailable_reason()
            rows.append({"name": name, "version": cls.version, "mime_types": list(cls.mime_types),
                         "available": reason is None, "remediation": reason})
    return rows


def cmd_migrate(args) -> int:
    cfg, plugins = _setup(args, quiet=True)
    state_dir = cfg.daemon.state_dir
    chains = state_chains.chains(state_dir, cfg.sources, plugins.connectors)
    if args.check:
        return _print_check(state_chains.survey(chains))
    if not state_dir.is_dir():
        raise NotFoundError(f"{state_dir}: no state directory there (daemon.state_dir in the config)")
    state = state_runner.open_state(state_dir, chains, write=True)
    state.close()
    for line in state.done or ["up to date: nothing to migrate"]:
        print(line)
    return 0


def _print_check(statuses) -> int:
    """One line per part of the state, its pending steps under it; 3 if any is pending."""
    pending = 0
    for s in statuses:
        if s.ahead:
            print(f"{s.chain.label}: schema {s.version}, newer than this ingestd knows (up to {s.chain.latest})")
        elif s.fresh:
            print(f"{s.chain.label}: new, to be marked at schema {s.chain.latest}")
        elif s.pending:
            print(f"{s.chain.label}: schema {s.version} → {s.chain.latest}, {len(s.pending)} step(s) pending")
            for step in s.pending:
                print(f"  {step.version} {step.name}: {step.summary}")
        else:
            print(f"{s.chain.label}: schema {s.version}, up to date")
        pending += len(s.pending) + s.fresh
    if any(s.ahead for s in statuses):
        print("written by a newer ingestd: run that version, or restore the backup taken before it "
              "(downgrades are not supported; see docs/upgrading.md)")
        return SchemaTooNew.exit_code
    print(f"{pending} pending: `ingestd migrate` (or starting the daemon) applies them"
          if pending else "up to date: nothing to migrate")
    return MigrationPending.exit_code if pending else 0


def cmd_cluster(args) -> int:
    from ingestd.cluster import commands

    cfg, _plugins = _setup(args, quiet=True)
    if args.action == "init":
        lines, code = commands.init(cfg, check=args.check)
    elif args.action == "ingest":
        lines, code = commands.ingest(cfg, args.source)
    elif args.action == "job":
        lines, code = commands.job(cfg, args.job_id)
    elif args.action == "import":
        from ingestd.cluster import importer

        lines, code = importer.command(cfg, _plugins.connectors, args.from_dir, lambda line: print(line, flush=True),
                                       max(args.batch, 1))
    elif args.action == "verify":
        from ingestd.cluster import verify

        lines, code = verify.command(cfg, deep=args.deep, as_json=args.json)
    else:
        lines, code = commands.status(cfg, as_json=args.json)
    for line in lines:
        print(line)
    return code


def _print_manifest(m: Manifest, as_json: bool) -> None:
    if as_json:
        print(json.dumps(m.to_json(), indent=2, ensure_ascii=False))
        return
    c = m.counters
    print(f"job {m.job_id}  source {m.source} ({m.kind})  {m.status}")
    print(f"  created {m.created_at}  started {m.started_at or '-'}  finished {m.finished_at or '-'}  "
          f"duration {m.duration_s() if m.duration_s() is not None else '-'}s")
    print(f"  discovered {c.discovered}  ingested {c.ingested}  unchanged {c.unchanged}  skipped {c.skipped}  "
          f"failed {c.failed}  deleted {c.deleted}  bytes {c.bytes}")
    for e in m.errors:
        print(f"  {e.code.value}: {e.message}" + (f"  [{e.item}]" if e.item else ""))
    if m.errors_dropped:
        print(f"  … and {m.errors_dropped} more errors in {m.items_file}")


COMMANDS = {
    "run": cmd_run, "ingest": cmd_ingest, "check-config": cmd_check_config, "status": cmd_status,
    "jobs": cmd_jobs, "document": cmd_document, "documents": cmd_documents, "cat": cmd_cat, "changes": cmd_changes,
    "sinks": cmd_sinks, "text": cmd_text, "reextract": cmd_reextract,
    "plugins": cmd_plugins, "verify": cmd_verify, "migrate": cmd_migrate,
    "cluster": cmd_cluster,
}
