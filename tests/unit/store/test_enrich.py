"""MIME detection: content first, the extension where content cannot tell, and a libmagic
handle per thread, replaced now and then (it grows with what it has seen)."""

from __future__ import annotations

import io
import threading
import zipfile
import weakref

import pytest

from ingestd.store import enrich

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)

pytestmark = pytest.mark.skipif(enrich.libmagic() is None, reason="libmagic is not installed")


@pytest.mark.parametrize(("head", "name", "mime"), [
    (PDF, "report.bin", "application/pdf"),  # content wins over a wrong extension
    (PNG, "photo", "image/png"),
    (b"a,b\n1,2\n", "table.csv", "text/csv"),  # plain text: the extension says which text
    (b"", "empty.pdf", "application/x-empty"),
])
def test_content_first_extension_where_content_cannot_tell(head, name, mime):
    assert enrich.detect_mime(head, name) == mime


def _zip_led_by(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, "<Properties>" + "x" * 3000 + "</Properties>")
        z.writestr("[Content_Types].xml", "<Types/>")
    return buf.getvalue()


@pytest.mark.parametrize(("name", "mime"), [
    ("book.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("notes.odt", "application/vnd.oasis.opendocument.text"),
    ("archive.zip", "application/zip"),
    ("photo.png", "application/zip"),  # the content says zip; only a zipped format's name refines it
])
def test_a_zip_whose_first_member_does_not_name_its_format_takes_the_extension(name, mime):
    """openpyxl writes docProps/app.xml first: libmagic then says only "zip"."""
    head = _zip_led_by("docProps/app.xml")
    assert enrich.detect_mime(head, "noext") == "application/zip"
    assert enrich.detect_mime(head, name) == mime


def test_an_email_whose_first_part_is_html_is_an_email():
    head = (b"Subject: hi\nFrom: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n"
            b"--b\nContent-Type: text/html\n\n<html><body><p>hello</p></body></html>\n--b--\n")
    assert enrich.detect_mime(head, "noext") == "text/html"  # what libmagic alone says
    assert enrich.detect_mime(head, "message.eml") == "message/rfc822"


def test_each_thread_detects_with_a_handle_of_its_own_and_the_same_answers():
    """Threads sniff at the same time on handles of their own (no shared lock to wait on),
    all reading one mapped database, and answer what python-magic's own handle answers."""
    import magic

    samples = [PDF, PNG, _zip_led_by("docProps/app.xml"), bytes(range(256)) * 8, b"\x1f\x8b\x08\x00" + bytes(60),
               b"<!DOCTYPE html><html><body>hi</body></html>", b"#!/bin/sh\necho hi\n", b"\x7fELF\x02\x01\x01" + bytes(57)]
    expected = [magic.Magic(mime=True).from_buffer(s) for s in samples]
    detector = enrich._Detector(reuse=1000)
    start = threading.Barrier(2)
    handles, answers = {}, {}

    def work(n):
        mine = detector.get()
        start.wait(10)  # both hold a handle: from here they sniff side by side
        answers[n] = [detector.get().from_buffer(s) for _ in range(30) for s in samples]
        handles[n] = (mine, detector.get())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers[0] == answers[1] == expected * 30
    (a, a_again), (b, b_again) = handles[0], handles[1]
    assert a is a_again and b is b_again and a is not b
    assert a.shares_database and b.shares_database


def test_the_handle_is_closed_and_replaced_after_its_quota(monkeypatch):
    trims = []
    monkeypatch.setattr(enrich.allocator, "trim", lambda: trims.append(True))
    detector = enrich._Detector(reuse=3)
    first = detector.get()
    assert detector.get() is first and detector.get() is first
    retired = weakref.ref(first)
    second = detector.get()
    assert second is not first and trims == [], "trimmed while a thread still held the old handle"
    del first  # the last user lets go: closed, and its freed pages handed back
    assert retired() is None and trims == [True]
    assert second.from_buffer(PDF) == "application/pdf"
