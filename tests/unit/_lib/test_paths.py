import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ingestd._lib.paths import (
    MAX_NAME_BYTES, _plain, _sanitise, file_uri, is_valid_id, safe_join, safe_name, safe_parts,
)
from ingestd.errors import ConnectorError

HOSTILE = ["..", ".", "../../etc/passwd", "/abs", "a\x00b", "a\nb", "\u202egnp.exe", "ｆｏｏ", "e\u0301",
           "x" * 5000, "\udcff\udcfe", "CON", " ", "a\\..\\b", "\u2028", "~$lock"]

names = st.text(st.characters(codec=None, exclude_categories=()), min_size=0, max_size=300) | st.sampled_from(HOSTILE)


@given(names)
def test_safe_name_is_a_single_bounded_component(name):
    out = safe_name(name)
    assert out not in ("", ".", "..")
    assert "/" not in out and "\x00" not in out and "\\" not in out
    assert len(out.encode("utf-8")) <= MAX_NAME_BYTES
    assert not any(ord(c) < 32 for c in out)
    assert safe_name(name) == out  # stable


@given(names, names)
def test_different_names_do_not_collide(a, b):
    if a != b and safe_name(a) == safe_name(b):
        # only names equal after NFC normalisation may share a result
        import unicodedata

        assert unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)


def test_plain_names_are_kept():
    assert safe_name("report 2026.pdf") == "report 2026.pdf"
    assert safe_name("e\u0301") == "\u00e9" + safe_name("e\u0301")[1:]


def test_long_names_keep_a_hash_suffix_and_stay_unique():
    a, b = "x" * 400 + "a", "x" * 400 + "b"
    assert safe_name(a) != safe_name(b)
    assert len(safe_name(a).encode()) <= MAX_NAME_BYTES


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(names, min_size=1, max_size=8))
def test_safe_join_never_leaves_the_root(tmp_path, parts):
    root = tmp_path / os.urandom(8).hex()  # a fresh root per example
    root.mkdir()
    try:
        target = safe_join(root, *parts)
    except ConnectorError as exc:
        assert exc.code == "invalid_name"
        return
    real = os.path.realpath(target)
    assert real.startswith(os.path.realpath(root) + os.sep)
    # and it can really be created there
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x")
    assert Path(real).read_bytes() == b"x"


def test_safe_join_refuses_a_symlinked_directory_leading_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(ConnectorError):
        safe_join(root, "evil", "file")
    (root / "link").symlink_to("/etc/passwd")
    with pytest.raises(ConnectorError):
        safe_join(root, "link")


def test_empty_and_dot_components_are_dropped():
    assert safe_parts(["a", "", ".", "b"]) == ["a", "b"]
    with pytest.raises(ConnectorError):
        safe_parts(["", "."])


@pytest.mark.parametrize("value,ok", [
    ("20261130T014412123456Z-a1b2c3d4", True), ("abcdefgh", True), ("short", False),
    ("../../etc/passwd", False), ("a" * 65, False), ("abcdefgh\x00", False), ("..%2F..%2Fetc", False),
])
def test_id_validation(value, ok):
    assert is_valid_id(value) is ok


def test_file_uri_is_exact_for_non_utf8_names(tmp_path):
    name = os.fsdecode(b"caf\xe9 #1.txt")
    uri = file_uri(tmp_path / name)
    assert uri.endswith("/caf%E9%20%231.txt")


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=260))
def test_the_fast_path_only_takes_names_the_full_walk_leaves_alone(name):
    if _plain(name):
        assert _sanitise(name) == name
