"""E-mail (.eml) with the standard library's `email` package (policy `default`: decoded
headers, MIME parts, transfer encodings): the subject as a heading, From/To/Cc/Date as
a list, the plain-text body (or the HTML one, through the HTML extractor), and the
attachments' names and types.

Outlook's .msg is not handled: the library for it (extract-msg) is GPL-3.0, which an
MIT project's default extra must not pull in; a separate plugin may register one."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from ingestd.plugin import Extracted, ExtractionError, Extractor, Limits
from ingestd.plugin.kit.markdown import Writer
from ingestd_text.common import decode, needs, read_bytes
from ingestd_text.web import html_to_markdown


class Email(Extractor):
    name = "email"
    version = "1"
    mime_types = ("message/rfc822",)
    requires = needs("trafilatura", "charset_normalizer")

    def extract(self, path: Path, limits: Limits) -> Extracted:
        message = email.message_from_bytes(read_bytes(path, limits), policy=email.policy.default)
        if not message.keys():
            raise ExtractionError("corrupt", "no e-mail headers")
        out = Writer(limits)
        out.heading(1, _header(message, "subject") or "(no subject)")
        fields = [(0, f"{name}: {value}") for name in ("From", "To", "Cc", "Date")
                  if (value := _header(message, name.lower()))]
        out.bullets(fields)
        body = message.get_body(preferencelist=("plain", "html"))
        if body is not None:
            text = _content(body)
            if body.get_content_subtype() == "html":
                out.block(html_to_markdown(text))
            else:
                out.paragraph(text)
        attachments = [f"{part.get_filename() or '(unnamed)'} ({part.get_content_type()})"
                       for part in message.iter_attachments()]
        if attachments:
            out.paragraph("Attachments:")
            out.bullets((0, a) for a in attachments)
        return out.result()


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a malformed header the parser chokes on
        value = message.get_all(name, [""])[0] if hasattr(message, "get_all") else ""
    return str(value or "").strip()


def _content(part) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return decode(payload)
