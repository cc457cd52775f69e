"""Text extraction in the running daemon: a derivative made off the ingest path, in child
processes, recorded once per (bytes, extractor, version), served over HTTP and the CLI,
and carried across restarts and SIGKILLs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.plugins.text import corpus
from tests.support.helpers import run_cli, wait_for, write_config
from tests.support.procs import THIRDPARTY, Daemon, plugin_site

pytestmark = pytest.mark.slow


class Env:
    def __init__(self, root: Path, **extract):
        self.root = root
        self.state = root / "state"
        self.inbox = root / "inbox"
        self.inbox.mkdir(exist_ok=True)
        self.config = root / "ingestd.toml"
        self.site = plugin_site(root, {"hostile": "ingestd_hostile_extractors"})
        self.daemons: list[Daemon] = []
        self.write(**extract)

    def write(self, sources=(), **extract):
        write_config(self.config, daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10},
                     http={"listen": "127.0.0.1:0"}, extract={"timeout": "10s", "memory_mib": 768, **extract},
                     sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2,
                               "after": "keep"}, *sources])

    def daemon(self, **env) -> Daemon:
        """The daemon, started (again) with these extra environment variables."""
        if not self.daemons:
            self.daemons.append(Daemon(self.config, self.state, self.root, pythonpath=[self.site, THIRDPARTY]))
        d = self.daemons[0]
        d.env = {k: v for k, v in d.env.items() if not k.startswith("INGESTD_TEST_")} | env
        return d.start()

    def drop(self, files: dict[str, bytes | Path]) -> None:
        for name, data in files.items():
            target = self.inbox / name
            if isinstance(data, Path):
                shutil.copyfile(data, target)
            else:
                target.write_bytes(data)

    def close(self):
        for d in self.daemons:
            d.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def request(d: Daemon, path: str):
    try:
        with urllib.request.urlopen(d.base_url + path, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def doc_ids(state: Path) -> dict[str, str]:
    """file name → document id."""
    db = sqlite3.connect(state / "documents.sqlite")
    try:
        return {Path(o).name: d for d, o in db.execute("SELECT doc_id, origin_uri FROM documents")}
    finally:
        db.close()


def texts(state: Path) -> list[tuple]:
    db = sqlite3.connect(state / "documents.sqlite")
    try:
        return db.execute("SELECT source_sha256, extractor, extractor_version, status FROM texts ORDER BY 1, 2, 3").fetchall()
    finally:
        db.close()


def text_status(d: Daemon, doc_id: str) -> str:
    status, body = d.get(f"/documents/{doc_id}")
    assert status == 200, body
    return body["text"]["status"]


def settled(d: Daemon, state: Path, names) -> dict[str, str]:
    """Wait until every named file is a document whose text is no longer pending."""
    ids = wait_for(lambda: (lambda got: got if set(names) <= set(got) else None)(doc_ids(state)), timeout=30,
                   message=f"documents for {sorted(names)}")
    wait_for(lambda: all(text_status(d, ids[n]) != "pending" for n in names), timeout=90, interval=0.2,
             message="every text extracted or failed")
    return ids


def metric(d: Daemon, name: str, **labels) -> float:
    status, _, body = request(d, "/metrics")
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in body.decode().splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    d = Path(tmp_path_factory.mktemp("samples"))
    t = corpus.Text(7)
    out = {"report.docx": corpus.docx_file(d / "report.docx", t).path,
           "slides.pptx": corpus.pptx_file(d / "slides.pptx", t).path,
           "paper.pdf": corpus.pdf_file(d / "paper.pdf", t).path,
           "table.csv": corpus.csv_file(d / "table.csv", t).path}
    out["locked.pdf"] = corpus.encrypted_pdf(d / "locked.pdf", out["paper.pdf"])
    out["bomb.docx"] = corpus.zip_bomb_docx(d / "bomb.docx", unpacked=512 << 20)
    out["loop.pdf"] = corpus.reference_loop_pdf(d / "loop.pdf")
    out["huge.xlsx"] = corpus.huge_sheet(d / "huge.xlsx")
    out["cut.docx"] = corpus.truncated(d / "cut.docx", out["report.docx"])
    return out


def test_text_is_served_with_its_record_and_failures_are_typed(env, samples):
    d = env.daemon()
    env.drop({n: samples[n] for n in ("report.docx", "paper.pdf", "locked.pdf")} | {"photo.png": b"\x89PNG\r\n\x1a\n" + bytes(64)})
    ids = settled(d, env.state, ["report.docx", "paper.pdf", "locked.pdf", "photo.png"])

    status, headers, body = request(d, f"/documents/{ids['report.docx']}/text")
    assert status == 200 and headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert body.decode().startswith("# Heading") and "| Col" in body.decode()
    assert headers["ETag"].strip('"') == d.get(f"/documents/{ids['report.docx']}")[1]["text"]["text_sha256"]

    _, doc = d.get(f"/documents/{ids['paper.pdf']}")
    assert doc["text"]["extractor"] == "pdf" and doc["text"]["pages"] == 2
    assert [p["kind"] for p in doc["text"]["parts"]] == ["page", "page"]

    status, _, body = request(d, f"/documents/{ids['locked.pdf']}/text")
    assert status == 422 and json.loads(body)["error"] == "encrypted"
    status, _, body = request(d, f"/documents/{ids['photo.png']}/text")
    assert status == 404 and json.loads(body)["error"] == "not_extracted"
    assert request(d, "/documents/0123456789abcdef0123456789abcdef/text")[0] == 404

    assert metric(d, "ingestd_extractions_total", extractor="docx", status="ok") == 1
    assert metric(d, "ingestd_extractions_total", extractor="pdf", status="encrypted") == 1

    cli = run_cli("text", ids["report.docx"], "--config", env.config, env=d.env)
    assert cli.returncode == 0 and cli.stdout == body_of(d, ids["report.docx"])
    cli = run_cli("text", ids["locked.pdf"], "--config", env.config, env=d.env)
    assert cli.returncode == 1 and "encrypted" in cli.stderr
    assert d.stop() == 0


def body_of(d: Daemon, doc_id: str) -> str:
    return request(d, f"/documents/{doc_id}/text")[2].decode()


def test_hostile_files_cost_their_own_typed_error_and_not_the_daemons_memory(env, samples):
    d = env.daemon()
    env.drop({"report.docx": samples["report.docx"], "paper.pdf": samples["paper.pdf"]})
    settled(d, env.state, ["report.docx", "paper.pdf"])
    baseline = rss_kib(d.proc.pid)
    hostile = {"bomb.docx": "too_large", "loop.pdf": "corrupt", "locked.pdf": "encrypted",
               "huge.xlsx": ("too_large", "timeout"), "cut.docx": "corrupt"}
    env.drop({n: samples[n] for n in hostile})
    ids = settled(d, env.state, list(hostile))
    for name, expected in hostile.items():
        status, _, body = request(d, f"/documents/{ids[name]}/text")
        code = json.loads(body)["error"]
        assert status == 422 and code in ((expected,) if isinstance(expected, str) else expected), (name, body)
    assert rss_kib(d.proc.pid) - baseline < 50 << 10
    assert d.get("/healthz")[0] == 200
    assert d.stop() == 0


def test_identical_bytes_are_extracted_once_and_a_restart_extracts_nothing(env, samples):
    d = env.daemon()
    env.drop({"a.docx": samples["report.docx"], "b.docx": samples["report.docx"], "sub-c.docx": samples["report.docx"]})
    ids = settled(d, env.state, ["a.docx", "b.docx", "sub-c.docx"])
    assert metric(d, "ingestd_extractions_total", extractor="docx", status="ok") == 1
    assert len({body_of(d, i) for i in ids.values()}) == 1
    before = texts(env.state)
    assert d.stop() == 0
    d = env.daemon()
    env.drop({"d.docx": samples["report.docx"]})  # new document, known bytes
    settled(d, env.state, ["d.docx"])
    assert texts(env.state) == before
    assert sum(metric(d, "ingestd_extractions_total", extractor=e, status="ok")
               for e in ("docx", "pdf", "pptx", "versioned")) == 0
    assert d.stop() == 0


def test_a_new_extractor_version_re_extracts_exactly_its_mime_types(env, samples):
    d = env.daemon(INGESTD_TEST_CSV_VERSION="1")
    files = {"one.csv": b"a,b\n1,2\n", "two.csv": b"a,b\n3,4\n", "report.docx": samples["report.docx"],
             "slides.pptx": samples["slides.pptx"]}
    env.drop(files)
    ids = settled(d, env.state, list(files))
    assert body_of(d, ids["one.csv"]).startswith("version 1")
    assert d.stop() == 0

    d = env.daemon(INGESTD_TEST_CSV_VERSION="2")
    wait_for(lambda: metric(d, "ingestd_extractions_total", extractor="versioned", status="ok") == 2, timeout=60,
             message="both CSVs extracted again")
    assert body_of(d, ids["one.csv"]).startswith("version 2")
    assert sum(metric(d, "ingestd_extractions_total", extractor=e, status="ok") for e in ("docx", "pptx")) == 0
    assert {(r[1], r[2]) for r in texts(env.state)} == {("versioned", "1"), ("versioned", "2"), ("docx", "1"),
                                                        ("pptx", "1")}
    assert d.stop() == 0

    d = env.daemon(INGESTD_TEST_CSV_VERSION="2")  # unchanged: nothing runs again
    wait_for(lambda: d.get("/healthz")[0] == 200, message="healthy")
    env.drop({"three.csv": b"a,b\n5,6\n"})
    settled(d, env.state, ["three.csv"])
    assert metric(d, "ingestd_extractions_total", extractor="versioned", status="ok") == 1
    assert d.stop() == 0


def test_a_sigkill_mid_extraction_loses_nothing(env):
    d = env.daemon(INGESTD_TEST_CSV_SLEEP="0.3")
    names = [f"f{n:02d}.csv" for n in range(12)]
    env.drop({n: f"a,b\n{n},x\n".encode() for n in names})
    wait_for(lambda: 0 < len(texts(env.state)) < len(names), timeout=60, interval=0.05,
             message="some but not all extracted")
    d.kill()
    d = env.daemon()
    ids = settled(d, env.state, names)
    for n in names:
        assert body_of(d, ids[n]).endswith(f"a,b\n{n},x\n\n")
    assert len(texts(env.state)) == len(names)
    assert d.stop() == 0


def test_extraction_off_for_a_source_and_by_mime(env, samples):
    env.write(sources=[{"name": "quiet", "kind": "local", "path": "quiet", "settle_seconds": 0.2, "extract": False},
                       {"name": "pdfs", "kind": "local", "path": "pdfs", "settle_seconds": 0.2,
                        "extract_mime": ["application/*"], "extract_skip_mime": ["application/pdf"]}])
    (env.root / "quiet").mkdir()
    (env.root / "pdfs").mkdir()
    d = env.daemon()
    shutil.copyfile(samples["report.docx"], env.root / "quiet" / "q.docx")
    shutil.copyfile(samples["paper.pdf"], env.root / "pdfs" / "p.pdf")
    shutil.copyfile(samples["report.docx"], env.root / "pdfs" / "w.docx")
    ids = settled(d, env.state, ["q.docx", "p.pdf", "w.docx"])
    assert text_status(d, ids["q.docx"]) == "not_extracted"
    assert "skip" in d.get(f"/documents/{ids['p.pdf']}")[1]["text"]["reason"]
    assert text_status(d, ids["w.docx"]) == "extracted"
    assert d.stop() == 0
