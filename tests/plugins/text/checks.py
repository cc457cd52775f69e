"""How a corpus document's Markdown is judged against the text it was written from."""

from __future__ import annotations

import re

from tests.plugins.text.corpus import Doc


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def problems(doc: Doc, markdown: str) -> list[str]:
    """What is missing: each sentence (whitespace aside), each heading as a Markdown
    heading line, each table as a pipe table (its header row, then a separator row)."""
    out = []
    text = flat(markdown)
    out += [f"sentence {s!r}" for s in doc.sentences if flat(s) not in text]
    out += [f"heading {h!r}" for h in doc.headings
            if not re.search(r"(?m)^#{1,6} " + re.escape(h) + r"\s*$", markdown)]
    for rows in doc.tables:
        header = r"\|\s*" + r"\s*\|\s*".join(re.escape(c) for c in rows[0]) + r"\s*\|\s*\n\|(\s*:?-{3,}:?\s*\|)+"
        body = all(re.search(r"\|\s*" + r"\s*\|\s*".join(re.escape(c) for c in row) + r"\s*\|", markdown)
                   for row in rows[1:])
        if not re.search(header, markdown) or not body:
            out.append(f"table headed {rows[0]}")
    return out
