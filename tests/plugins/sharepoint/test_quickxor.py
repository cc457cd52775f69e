"""QuickXorHash: published vectors, and agreement with a bit-by-bit transcription of
the definition for any content split any way."""

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd_sharepoint.quickxor import QuickXorHash
from tests.fakegraph.hashes import quick_xor_bits, quick_xor_columns

# Vectors published with rclone's OneDrive backend (input and hash both base64).
VECTORS = [
    ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
    ("0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="),
    ("jRRDVA==", "jaDAEKgAAAAAAAAABAAAAAAAAAA="),
    ("eAV52qE=", "eChAHrQRCgAAAAAABQAAAAAAAAA="),
    ("luBZlaT6", "lgBHFipBCn0AAAAABgAAAAAAAAA="),
    ("qaApEj66lw==", "qQBFCiTgA11cAgAABwAAAAAAAAA="),
    ("/aNzzCFPS/A=", "/RjFHJgRgicsAR4ACAAAAAAAAAA="),
    ("n6Neh7p6fFgm", "nxiFFw6hCz3wAQsmCQAAAAAAAAA="),
    ("J9iPGCbfZSTNyw==", "J8DGIzBggm+UgQTNUgYAAAAAAAA="),
    ("i+UZyUGJKh+ISbk=", "iyhHBpIRhESo4AOIQ0IuAAAAAAA="),
    ("h490d57Pqz5q2rtT", "h3gEHe7giWeswgdq3MYupgAAAAA="),
    ("vPgoDjOfO6fm71RxLw==", "vMAHChwwg0/s4BTmdQcV4vACAAA="),
    ("XoJ1AsoR4fDYJrDqYs4=", "XhBEHQSgjAiEAx7YPgEs1CEGZwA="),
    ("gQaybEqS/4UlDc8e4IJm", "gDCALNigBEn8oxAlZ8AzPAAOQZg="),
    ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
    (base64.b64encode(b"hello world").decode(), "aCgDG9jwBhDc4Q1yawMZAAAAAAA="),
]


def qxh(*pieces: bytes) -> str:
    h = QuickXorHash()
    for piece in pieces:
        h.update(piece)
    return h.b64digest()


@pytest.mark.parametrize("data, expected", VECTORS)
def test_published_vectors(data, expected):
    assert qxh(base64.b64decode(data)) == expected
    assert base64.b64encode(quick_xor_bits(base64.b64decode(data))).decode() == expected


@pytest.mark.parametrize("length", [1, 2, 159, 160, 161, 319, 320, 321, 1000, 4096])
def test_matches_the_definition_across_block_boundaries(length):
    data = os.urandom(length)
    expected = base64.b64encode(quick_xor_bits(data)).decode()
    assert qxh(data) == expected
    assert qxh(data[:7], data[7:170], data[170:]) == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=900), st.lists(st.integers(min_value=0, max_value=900), max_size=6))
def test_any_split_hashes_like_the_whole(data, cuts):
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    assert qxh(*pieces) == base64.b64encode(quick_xor_bits(data)).decode()


def test_large_input_agrees_with_the_fakes_column_method():
    data = os.urandom(3 * 1024 * 1024 + 77)
    pieces = [data[i:i + 65_537] for i in range(0, len(data), 65_537)]
    assert qxh(*pieces) == base64.b64encode(quick_xor_columns(data)).decode()
