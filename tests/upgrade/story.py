"""What a user's installation went through before the upgrade: the story the fixture
generator makes an installed release live through, with its daemon and CLI only.

Five sources share one state directory:

  drop     a drop folder, `after = "move"`, `max_file_size = 4096`
  keep     a drop folder, `after = "keep"` (kept-file memory)
  bucket   an S3 prefix on moto (per-key state, several versions, a tombstone)
  late     an S3 prefix whose bucket does not exist at first (a failed job, then success)
  legal    a SharePoint library on the fake Graph (delta link, renames, moves, a tombstone)

and the daemon is started three times: a first day (first syncs, files dropped), changes
synced through the API, a crash in the middle of a download (SIGKILL, then the restart's
recovery job), one-shot `ingestd ingest` runs, and a last start whose answers (HTTP and
CLI) are recorded as what the release said about its own state.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.fakegraph import FakeGraph
from tests.support.helpers import wait_for, write_config

from .kit import all_jobs, mark, trigger, wait_jobs, wait_schedule_fired

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SP_SECRET = "fixture-client-secret-not-a-real-one"
S3_KEY, S3_SECRET = "AKIAFIXTURE000000001", "fixture-secret-access-key-not-real"
SHARED = b"the same bytes in a drop folder and in a bucket: two documents, one blob\n"
# Tiny but real formats, so MIME detection has something to say.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c6360"
                    "00000000050001a5f645400000000049454e44ae426082")
KEEP_MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z: whole seconds survive any archive format


class Story:
    def __init__(self, release, root: Path, moto, fake: FakeGraph, env: dict):
        self.release, self.root, self.moto, self.fake, self.env = release, root, moto, fake, env
        self.config = root / "ingestd.toml"
        self.state = root / "state"
        self.move_dir = root / "drop" / "move"
        self.keep_dir = root / "drop" / "keep"
        self.staging = root.parent / "staging"
        self.daemon = None
        self.starts = 0
        self.checks: dict = {}  # what the release itself showed about its cursors

    # -- setting up ---------------------------------------------------------------------

    def write_config(self) -> None:
        for d in (self.move_dir, self.keep_dir, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "credentials.json").write_text(
            '{"s3": {"type": "aws", "access_key_id": "%s", "secret_access_key": "%s"},\n'
            ' "sp": {"type": "azure_client_secret", "tenant_id": "%s", "client_id": "%s", "client_secret": "%s"}}\n'
            % (S3_KEY, S3_SECRET, self.fake.tenant, CLIENT_ID, SP_SECRET))
        os.chmod(self.root / "credentials.json", 0o600)
        shutil.copyfile(self.fake.ca.cert_path, self.root / "graph-ca.pem")
        s3 = {"kind": "s3", "endpoint_url": self.moto.url, "addressing_style": "path", "credentials": "s3",
              "every": "1d"}
        write_config(
            self.config,
            daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10},
            http={"listen": "127.0.0.1:0"},
            credentials={"registry": "credentials.json"},
            sources=[
                {"name": "drop", "kind": "local", "path": "drop/move", "after": "move", "settle_seconds": 0.3,
                 "max_file_size": 4096},
                {"name": "keep", "kind": "local", "path": "drop/keep", "after": "keep", "settle_seconds": 0.3},
                {"name": "bucket", "bucket": "docs", **s3},
                {"name": "late", "bucket": "late", "prefix": "in/", **s3},
                {"name": "legal", "kind": "sharepoint", "site_url": "https://contoso.sharepoint.com/sites/legal",
                 "library": "Documents", "credentials": "sp", "graph_url": self.fake.base_url,
                 "authority_url": self.fake.base_url, "ca_bundle": "graph-ca.pem", "every": "1d"},
            ],
        )

    def seed_remotes(self) -> None:
        self.moto.s3.create_bucket(Bucket="docs")
        for key, body in {
            "reports/2024/q1.txt": b"Q1 revenue: 100\n", "reports/2024/q2.txt": b"Q2 revenue: 120\n",
            "notes/caf\u00e9 menu & prices.md": "# Men\u00fc\n\n- caf\u00e9: 2 \u20ac\n".encode(),
            "to-delete.txt": b"deleted at the source before the upgrade\n", "shared.txt": SHARED,
            "scans/page.png": PNG, "folder-marker/": b"",
        }.items():
            self.moto.put(key, body, bucket="docs")
        self.fake.add_app(CLIENT_ID, SP_SECRET)
        site = self.fake.add_site()
        self.drive = site.add_drive()
        for path, body in {
            "Contracts/alpha.txt": b"alpha contract, first draft\n", "Contracts/beta.pdf": PDF,
            "Policies/travel.txt": b"travel policy\n", "Policies/expenses.txt": b"expenses policy\n",
            "old-name.txt": b"a file that gets renamed\n", "moving.txt": b"a file that moves to Archive\n",
            "doomed.txt": b"a file deleted in SharePoint\n",
        }.items():
            self.drive.add(path, body)

    # -- the daemon ---------------------------------------------------------------------

    def start(self) -> float:
        self.starts += 1
        workdir = self.root.parent / f"start-{self.starts}"  # its notify socket and log
        workdir.mkdir()
        self.daemon = self.release.daemon(self.config, self.state, workdir, self.env)
        began = time.time()
        self.daemon.start()
        return began

    def stop(self) -> None:
        code = self.daemon.stop()
        self.daemon.notify.close()
        if code != 0:
            raise RuntimeError(f"the release's daemon exited {code}:\n{self.daemon.log_text()[-3000:]}")

    def drop(self, folder: Path, files: dict[str, bytes], mtime: int | None = None) -> None:
        """Write each file beside the drop folder, then rename it in: the watcher sees
        whole files only, all at once."""
        for i, (rel, body) in enumerate(files.items()):
            tmp = self.staging / f"{i}.part"
            tmp.write_bytes(body)
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, folder / rel)

    # -- chapters -----------------------------------------------------------------------

    def first_day(self) -> None:
        """First syncs on start (`late` fails: no bucket yet), then files dropped."""
        before = mark()
        began = self.start()
        wait_jobs(self.daemon, before, {"bucket": 1, "late": 1, "legal": 1})
        wait_schedule_fired(self.daemon, began)
        before = mark()
        self.drop(self.move_dir, {"a.txt": b"a, version 1\n", "sub/b.txt": b"b in a subfolder\n",
                                  "shared.txt": SHARED, "big.bin": b"\x00" * 5000, "empty.txt": b""})
        self.drop(self.keep_dir, {"k1.txt": b"kept one\n", "nested/k2.txt": b"kept two\n",
                                  "r\u00e9sum\u00e9 2024.txt": "r\u00e9sum\u00e9\n".encode()}, mtime=KEEP_MTIME)
        wait_for(lambda: not any(p.is_file() for p in self.move_dir.rglob("*")), timeout=60,
                 message="the move folder to be emptied")
        self._wait_keep(before, 3)

    def changes(self) -> None:
        """Edits, renames, moves and deletions at every source, synced through the API."""
        self.moto.put("reports/2024/q1.txt", b"Q1 revenue: 101 (restated)\n", bucket="docs")
        self.moto.put("reports/2024/q3.txt", b"Q3 revenue: 130\n", bucket="docs")
        self.moto.s3.delete_object(Bucket="docs", Key="to-delete.txt")
        self.moto.s3.create_bucket(Bucket="late")
        self.moto.put("in/hello.txt", b"hello from the late bucket\n", bucket="late")
        self.moto.put("outside.txt", b"outside the prefix\n", bucket="late")
        self.drive.edit("Contracts/alpha.txt", b"alpha contract, second draft\n")
        self.drive.rename("old-name.txt", "new-name.txt")
        self.drive.move("moving.txt", "Archive")
        self.drive.delete("doomed.txt")
        self.drive.rename("Policies", "Policies 2024")
        self.drive.add("Contracts/gamma.txt", b"gamma, added later\n")
        before = mark()
        for source in ("bucket", "late", "legal"):
            trigger(self.daemon, source)
        self.drop(self.move_dir, {"a.txt": b"a, version 2 (same name, new content)\n"})
        with open(self.keep_dir / "k1.txt", "ab") as fh:  # edited in place: read again, a new version
            fh.write(b"and an edit\n")
        os.utime(self.keep_dir / "k1.txt", (KEEP_MTIME + 60, KEEP_MTIME + 60))
        wait_jobs(self.daemon, before, {"bucket": 1, "late": 1, "legal": 1, "drop": 1})
        self._wait_keep(before, 1)
        before = mark()
        self.moto.put("reports/2024/q1.txt", b"Q1 revenue: 102 (restated again)\n", bucket="docs")
        self.drive.edit("Contracts/alpha.txt", b"alpha contract, signed\n")
        for source in ("bucket", "legal"):
            trigger(self.daemon, source)
        wait_jobs(self.daemon, before, {"bucket": 1, "legal": 1})

    def crash(self) -> None:
        """SIGKILL while a SharePoint download is in flight; the restart closes that job
        as interrupted and runs a recovery job, which finishes the sync."""
        self.drive.edit("Contracts/beta.pdf", PDF.replace(b"%%EOF", b"% second version\n%%EOF"))
        self.fake.flight.hold(wave=1000, timeout=120)
        job = trigger(self.daemon, "legal")
        if not self.fake.flight.wait_for(lambda f: f.now >= 1, timeout=60):
            raise RuntimeError("the SharePoint download never started")
        self.daemon.kill()
        self.daemon.notify.close()
        self.fake.flight.release()
        self.fake.flight.hold(wave=0)
        before = mark()
        began = self.start()
        wait_jobs(self.daemon, before, {"legal": 1, "bucket": 1, "late": 1})
        wait_schedule_fired(self.daemon, began)
        killed = next(j for j in all_jobs(self.daemon, source="legal") if j["job_id"] == job)
        if killed["status"] != "failed":
            raise RuntimeError(f"the killed job ended {killed['status']}, not failed")
        self.stop()

    def one_shots(self) -> None:
        """`ingestd ingest` with no daemon running: nothing changed, nothing is fetched."""
        self.moto.log.clear()
        code, manifest = self.release.cli_json("ingest", "bucket", config=self.config, env=self.env)
        gets = self.moto.log.count("GET", per_object=True)
        if code != 0 or manifest["counters"]["ingested"] or gets:
            raise RuntimeError(f"a no-change one-shot S3 sync: exit {code}, {manifest['counters']}, {gets} GETs")
        code, manifest = self.release.cli_json("ingest", "keep", config=self.config, env=self.env)
        if code != 0 or manifest["counters"]["discovered"]:
            raise RuntimeError(f"a one-shot run of the keep folder read files: {manifest['counters']}")

    def last_day(self, record) -> None:
        """A last start: its start-up syncs find nothing new (checked at the remotes, so the
        release is known to resume from its own cursors); then `record(daemon)`."""
        self.moto.log.clear()
        graph_before = len(self.fake.graph())
        before = mark()
        began = self.start()
        wait_jobs(self.daemon, before, {"bucket": 1, "late": 1, "legal": 1})
        wait_schedule_fired(self.daemon, began)
        calls = self.fake.graph()[graph_before:]
        deltas = [r for r in calls if r.path.endswith("/root/delta")]
        self.checks = {"s3_object_gets": self.moto.log.count("GET", per_object=True),
                       "graph_delta_calls": len(deltas),
                       "graph_delta_tokens": [r.query.get("token", [None])[0] for r in deltas],
                       "graph_downloads": sum(1 for r in calls if r.path.endswith("/content"))}
        if self.checks["s3_object_gets"] or len(deltas) != 1 or deltas[0].query.get("token") is None:
            raise RuntimeError(f"the release did not resume from its cursors: {self.checks}")
        record(self.daemon)
        self.stop()

    def _wait_keep(self, before: str, files: int) -> None:
        """Watch jobs of the keep folder may split a drop; wait for `files` read in all."""

        def read():
            jobs = [j for j in all_jobs(self.daemon, source="keep") if j["job_id"] > before]
            done = all(j["status"] in ("succeeded", "partial", "failed") for j in jobs)
            return done and sum(j["counters"]["discovered"] for j in jobs) >= files

        wait_for(read, timeout=60, interval=0.1, message=f"{files} kept files to be read")

    def run(self, record) -> None:
        self.write_config()
        self.seed_remotes()
        self.first_day()
        self.changes()
        self.crash()
        self.one_shots()
        self.last_day(record)
