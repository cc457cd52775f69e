"""The built-in extractors on the generated corpus, called directly (the pool that runs
them in child processes has its own tests): known sentences, headings and tables come
back, in Markdown, from every format."""

from __future__ import annotations

import collections
import shutil

import pytest

from ingestd.plugin import ExtractionError, Limits
from ingestd.plugin.manager import Plugins
from ingestd.store.enrich import detect_mime, read_head
from tests.plugins.text import corpus
from tests.plugins.text.checks import problems


@pytest.fixture(scope="module")
def by_mime():
    plugins = Plugins().load()
    assert plugins.info["text"].status == "loaded", plugins.info["text"].error
    return {mime: cls() for cls in plugins.extractors.values() for mime in cls.mime_types}


def test_at_least_200_files_across_every_format(documents):
    kinds = collections.Counter(doc.path.suffix for doc in documents)
    assert len(documents) >= 200
    assert set(kinds) == {f".{ext}" for ext in corpus.WRITERS}


def test_ingestd_records_each_file_under_the_mime_type_its_extractor_declares(documents, by_mime):
    wrong = [(d.path.name, detect_mime(read_head(d.path), d.path.name)) for d in documents
             if detect_mime(read_head(d.path), d.path.name) != d.mime or d.mime not in by_mime]
    assert not wrong


@pytest.fixture(scope="module")
def as_blobs(documents, tmp_path_factory):
    """The corpus under blob-store names (a hash, no suffix): what extractors really get."""
    directory = tmp_path_factory.mktemp("blobs")
    out = {}
    for n, doc in enumerate(documents):
        out[doc.path] = directory / f"{n:064x}"
        shutil.copyfile(doc.path, out[doc.path])
    return out


def test_95_percent_of_the_corpus_yields_its_sentences_headings_and_tables(documents, by_mime, as_blobs):
    failed = {}
    for doc in documents:
        try:
            result = by_mime[doc.mime].extract(as_blobs[doc.path], Limits())
        except ExtractionError as exc:
            failed[doc.path.name] = [f"{exc.code}: {exc.message}"]
            continue
        missing = problems(doc, result.markdown)
        if missing:
            failed[doc.path.name] = missing
        if doc.parts is not None and result.pages != doc.parts:
            failed.setdefault(doc.path.name, []).append(f"{result.pages} parts, expected {doc.parts}")
    assert len(failed) <= len(documents) * 0.05, failed
    # every format is held to it, not just the corpus as a whole
    per_format = collections.Counter(name.split("-")[0] for name in failed)
    assert all(n <= 2 for n in per_format.values()), failed


def test_boundaries_are_spans_of_the_markdown_in_order(documents, by_mime):
    doc = next(d for d in documents if d.path.suffix == ".pptx")
    result = by_mime[doc.mime].extract(doc.path, Limits())
    spans = [(b.start, b.end) for b in result.boundaries]
    assert [b.kind for b in result.boundaries] == ["slide"] * 3
    assert spans == sorted(spans) and all(a < b for a, b in spans)
    for boundary, title in zip(result.boundaries, doc.headings):
        assert boundary.label == title
        assert result.markdown[boundary.start:boundary.end].startswith(f"## {title}")


def test_a_sheet_larger_than_the_character_limit_is_too_large(tmp_path, by_mime):
    path = corpus.huge_sheet(tmp_path / "big.xlsx", rows=5000)
    with pytest.raises(ExtractionError) as caught:
        by_mime[detect_mime(read_head(path), path.name)].extract(path, Limits(max_chars=50_000))
    assert caught.value.code == "too_large"


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, by_mime):
    path = corpus.zip_bomb_docx(tmp_path / "bomb.docx", unpacked=64 << 20)
    with pytest.raises(ExtractionError) as caught:
        by_mime[WORD].extract(path, Limits())
    assert caught.value.code == "too_large" and "zip bomb" in caught.value.message


def test_an_encrypted_pdf_says_so(tmp_path, documents, by_mime):
    source = next(d.path for d in documents if d.path.suffix == ".pdf")
    path = corpus.encrypted_pdf(tmp_path / "locked.pdf", source)
    with pytest.raises(ExtractionError) as caught:
        by_mime["application/pdf"].extract(path, Limits())
    assert caught.value.code == "encrypted"


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".pptx", ".xlsx", ".odt"])
def test_a_truncated_file_is_corrupt(tmp_path, documents, by_mime, suffix):
    doc = next(d for d in documents if d.path.suffix == suffix)
    path = corpus.truncated(tmp_path / f"cut{suffix}", doc.path)
    with pytest.raises(ExtractionError) as caught:
        by_mime[doc.mime].extract(path, Limits())
    assert caught.value.code == "corrupt"


WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
