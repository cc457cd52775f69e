"""The consumer in README's "Feeding an index", run exactly as printed there against a
daemon with a token: it mirrors every live document, follows edits and deletions, and
resumes from its saved cursor after being killed."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT, wait_for
from tests.integration.test_api_feed import Feed


def readme_consumer() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Feeding an index", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_consumer_is_short_and_standard_library_only():
    code = readme_consumer()
    assert len(code.strip().splitlines()) <= 30
    imported = {name.strip() for line in code.splitlines() if line.startswith("import ")
                for name in line[len("import "):].replace(" ", "").split(",")}
    imported = {name.split(".")[0] for name in imported}
    assert imported <= set(sys.stdlib_module_names)


@pytest.fixture
def token_feed(tmp_path):
    f = Feed(tmp_path, token=True).start()
    yield f
    f.close()


def test_the_readme_consumer_mirrors_the_live_documents(token_feed, tmp_path):
    f = token_feed
    work = tmp_path / "consumer"
    work.mkdir()
    script = work / "consumer.py"
    script.write_text(readme_consumer())
    env = {**os.environ, "INGESTD_API": f.daemon.base_url, "INGESTD_TOKEN": f.setup.token}

    def start():
        return subprocess.Popen([sys.executable, str(script)], cwd=work, env=env, stderr=subprocess.PIPE)

    def mirrored(proc):
        def same():
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
            live = {d["doc_id"]: d["sha256"] for d in f.client.get("/documents?limit=500").json["documents"]}
            have = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (work / "mirror").glob("*")}
            return live and have == live
        wait_for(same, timeout=60, interval=0.1, message="the mirror to match GET /documents")

    (f.data / "a.txt").write_bytes(b"a, one\n")
    (f.data / "b.txt").write_bytes(b"b\n")
    f.run_fx()
    f.drop("c.txt", b"c\n")
    consumer = start()
    try:
        mirrored(consumer)
        (f.data / "a.txt").write_bytes(b"a, two\n")  # an edit and a deletion while it follows
        (f.data / "b.txt").unlink()
        f.gone.write_text("b.txt\n")
        f.run_fx()
        mirrored(consumer)
        consumer.kill()
        consumer.wait(10)
        f.drop("d.txt", b"d\n")  # arrives while the consumer is down
        wait_for(lambda: len(f.client.get("/documents").json["documents"]) == 3, timeout=30, message="d.txt stored")
        consumer = start()
        mirrored(consumer)
        # the consumer saves its cursor after applying the page, so the mirror can match a
        # moment before the cursor file does (it is even empty while being rewritten)
        cursor = work / "mirror.cursor"
        newest = f.changes()["next_after"]
        wait_for(lambda: cursor.read_text() == newest, timeout=30, interval=0.05,
                 message=f"the consumer to save cursor {newest}")
        assert len(list((work / "mirror").iterdir())) == 3
    finally:
        consumer.kill()
        consumer.wait(10)
