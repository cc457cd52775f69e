"""A guess at the text's language, when it is cheap: py3langid (BSD-3, part of the text
extra) on a sample, kept only when the sample is long enough and the guess confident.
Without py3langid the language is simply unknown."""

from __future__ import annotations

import re

SAMPLE = 4000
MIN_LETTERS = 60
CONFIDENCE = 0.9

_MARKUP = re.compile(r"[#|*_>`\-]+|\d+")
_identifier = None


def guess(text: str) -> str | None:
    sample = _MARKUP.sub(" ", text[:SAMPLE])
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return None
    identifier = _load()
    if identifier is None:
        return None
    try:
        language, probability = identifier.classify(sample)
    except (ValueError, IndexError):  # the guess is a nicety: a text it cannot read has no language
        return None
    return str(language) if probability >= CONFIDENCE else None


def _load():
    global _identifier
    if _identifier is None:
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError:
            _identifier = False
        else:
            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier or None
