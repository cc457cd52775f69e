"""The worker pool: each file in a child process under a wall-clock and an address-space
limit, so hangs, balloons and crashes end in typed errors of that one file, the pool
carries on, and the calling process's memory never moves."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

import pytest

from ingestd.extract.pool import Pool
from ingestd.extract.protocol import Request
from ingestd.plugin import Limits
from tests.plugins.text import corpus


@pytest.fixture
def pool():
    p = Pool(size=2, memory_mib=512)
    yield p
    p.close()


def ask(pool: Pool, tmp_path: Path, extractor: str, content: bytes = b"x", **limits):
    path = tmp_path / f"in-{time.monotonic_ns()}"
    path.write_bytes(content)
    out = tmp_path / f"out-{time.monotonic_ns()}"
    started = time.monotonic()
    result = pool.run(Request(str(path), extractor, str(out), Limits(**{"seconds": 5.0, **limits})))
    return result, out, time.monotonic() - started


def test_a_file_that_hangs_is_a_timeout_and_the_next_file_is_served(pool, tmp_path, hostile_plugins):
    ask(pool, tmp_path, "chatty", b"warm-up")  # the worker's start-up is not the file's time
    result, _, took = ask(pool, tmp_path, "hang", seconds=1.0)
    assert result.code == "timeout" and took < 10
    result, out, _ = ask(pool, tmp_path, "chatty", b"after the hang")
    assert result.ok and "after the hang" in out.read_text()


def test_a_file_that_balloons_is_too_large_within_the_memory_limit(pool, tmp_path, hostile_plugins):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, _, took = ask(pool, tmp_path, "balloon", seconds=30.0)
    assert result.code == "too_large", result
    assert "512 MiB" in result.message
    # the balloon was the child's: this process grew by nothing like it
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 << 10


def test_a_parser_that_crashes_costs_one_file(pool, tmp_path, hostile_plugins):
    result, _, _ = ask(pool, tmp_path, "abort")
    assert result.code == "corrupt" and "SIGABRT" in result.message
    assert ask(pool, tmp_path, "chatty", b"still here")[0].ok


def test_what_a_library_prints_cannot_corrupt_the_replies(pool, tmp_path, hostile_plugins):
    result, out, _ = ask(pool, tmp_path, "chatty", b"hello")
    assert result.ok and out.read_text() == "# Chatty\n\nhello\n"
    assert result.chars == len("# Chatty\n\nhello\n") and len(result.sha256) == 64


def test_an_unknown_extractor_is_unsupported(pool, tmp_path):
    assert ask(pool, tmp_path, "no-such-extractor")[0].code == "unsupported"


def test_at_most_size_files_run_at_once(tmp_path, hostile_plugins):
    pool = Pool(size=2, memory_mib=512)
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(ask(pool, tmp_path, "slow", b"1", seconds=20)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 4 and all(r[0].ok for r in results)
        assert pool.started == 2  # two workers served four files
    finally:
        pool.close()


def test_workers_are_retired_after_their_quota(tmp_path, hostile_plugins):
    pool = Pool(size=1, memory_mib=512, recycle=2)
    try:
        for n in range(5):
            assert ask(pool, tmp_path, "chatty", str(n).encode())[0].ok
        assert pool.started == 3
    finally:
        pool.close()


# -- hostile documents, through the real extractors ------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = Path(tmp_path_factory.mktemp("hostile"))
    pdf = corpus.pdf_file(d / "plain.pdf", corpus.Text(1)).path
    docx = corpus.docx_file(d / "plain.docx", corpus.Text(2)).path
    xlsx = corpus.xlsx_file(d / "plain.xlsx", corpus.Text(3)).path
    return {
        "zip bomb docx": (corpus.zip_bomb_docx(d / "bomb.docx", unpacked=256 << 20), "docx", "too_large"),
        "reference-loop pdf": (corpus.reference_loop_pdf(d / "loop.pdf"), "pdf", "corrupt"),
        "encrypted pdf": (corpus.encrypted_pdf(d / "locked.pdf", pdf), "pdf", "encrypted"),
        "huge sheet": (corpus.huge_sheet(d / "huge.xlsx"), "xlsx", ("too_large", "timeout")),
        "truncated pdf": (corpus.truncated(d / "cut.pdf", pdf), "pdf", "corrupt"),
        "truncated docx": (corpus.truncated(d / "cut.docx", docx), "docx", "corrupt"),
        "truncated xlsx": (corpus.truncated(d / "cut.xlsx", xlsx), "xlsx", "corrupt"),
    }


LIMIT = 10.0


@pytest.mark.parametrize("case", ["zip bomb docx", "reference-loop pdf", "encrypted pdf", "huge sheet",
                                  "truncated pdf", "truncated docx", "truncated xlsx"])
def test_each_hostile_file_ends_in_its_typed_error_within_the_limit(pool, tmp_path, hostile, case):
    path, extractor, expected = hostile[case]
    ask(pool, tmp_path, "text")  # workers warm: what is timed below is the file alone
    out = tmp_path / "out"
    started = time.monotonic()
    result = pool.run(Request(str(path), extractor, str(out), Limits(seconds=LIMIT, max_chars=5_000_000)))
    took = time.monotonic() - started
    assert result.code in ((expected,) if isinstance(expected, str) else expected), result
    assert took < LIMIT + 5
    assert not out.exists()
