"""`make cluster`: try cluster mode on one machine in one command.

Starts a private PostgreSQL (Debian's binaries, `initdb` in a temp dir, a free loopback
port), moto's S3 on 127.0.0.1 (the blob store, and a `docs` bucket with a few objects as a
source, and a drop folder watched by instance a), creates the schema, and starts three
`ingestd run` instances (a, b, c). It prints
the commands to look around, and stops everything on Ctrl-C. Nothing system-wide is
started or changed: the database's files are removed at the end; the instances' configs
and logs stay in their temp dir for a look.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.conftest import make_secret
from tests.plugins.s3.kit import MotoS3

from .kit import BLOBS, DOCS, instance_config, s3_source, write_registry
from .pgserver import PostgresServer, bindir

INSTANCES = ("a", "b", "c")


def main() -> int:
    if bindir() is None:
        print("PostgreSQL is not installed (Debian: apt-get install postgresql)", file=sys.stderr)
        return 69
    root = Path(tempfile.mkdtemp(prefix="ingestd-cluster-"))
    pg = PostgresServer(make_secret("pg")).start()
    moto = MotoS3()
    procs: list[subprocess.Popen] = []
    try:
        db = pg.create_database()
        moto.s3.create_bucket(Bucket=BLOBS)
        moto.s3.create_bucket(Bucket=DOCS)
        for i in range(20):
            moto.put(f"demo/{i:02d}.txt", f"document {i}\n".encode(), bucket=DOCS)
        registry = write_registry(root / "credentials.json", pg.password)
        inbox = root / "inbox"
        inbox.mkdir()
        sources = [s3_source("bucket", DOCS, moto.url, 60),
                   {"name": "inbox", "kind": "local", "path": str(inbox), "node": INSTANCES[0]}]
        configs = {n: instance_config(root / n, n, database_url=pg.url(db), s3_url=moto.url, registry=registry,
                                      ttl=10, every=60, http=True, sources=sources) for n in INSTANCES}
        subprocess.run([sys.executable, "-m", "ingestd", "cluster", "init", "--config", str(configs["a"])], check=True)
        for name, cfg in configs.items():
            log = open(root / f"{name}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "ingestd", "run", "--config", str(cfg)],
                                          stdout=log, stderr=log, start_new_session=True))
        a = configs["a"]
        apis = [_api_address(root / n / "state" / "daemon.json", p) for n, p in zip(INSTANCES, procs)]
        print(f"""
cluster running: PostgreSQL {pg.url(db)}, S3 {moto.url} (blobs s3://{BLOBS}/store, source s3://{DOCS})
instances {', '.join(INSTANCES)}: configs and logs under {root}
  APIs: {', '.join(f'{n} http://{addr}' for n, addr in zip(INSTANCES, apis))}
  curl -X POST -H 'Content-Type: application/json' -d '{{"source": "bucket"}}' http://{apis[0]}/ingest
  cp SOME_FILE {inbox}/   (instance {INSTANCES[0]} watches it; then: curl http://{apis[2]}/changes)
  {sys.executable} -m ingestd cluster status --config {a}
  {sys.executable} -m ingestd cluster ingest bucket --config {a}
  {sys.executable} -m ingestd cluster job JOB_ID --config {a}
  kill -9 / kill -STOP one instance ({', '.join(f'{n}={p.pid}' for n, p in zip(INSTANCES, procs))}) and watch the others take over
Ctrl-C stops everything.""", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        moto.stop()
        pg.stop()
    return 0


def _api_address(info: Path, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The instance's API address, from the daemon.json it writes once it is up."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return json.loads(info.read_text())["http"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError(f"the instance did not start (pid {proc.pid}); see the logs next to {info.parent}")


if __name__ == "__main__":
    raise SystemExit(main())
