"""Emptied subfolders of a drop folder are pruned once they have sat untouched a while."""

import os
import time

import pytest

from ingestd.config import Source
from ingestd_local.connector import EMPTY_FOLDER_GRACE, LocalConnector
from ingestd_local.options import LocalOptions


def connector(root, tmp_path, **options):
    opts = LocalOptions(path=root, **options)
    return LocalConnector(Source(name="drop", kind="local", enabled=True, options=opts), None, tmp_path / "state")


def age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def drop(tmp_path):
    root = tmp_path / "drop"
    (root / "old" / "deeper").mkdir(parents=True)
    (root / "fresh").mkdir()
    (root / "busy").mkdir()
    (root / "busy" / "a.pdf").write_bytes(b"%PDF")
    (root / "hidden").mkdir()
    (root / "hidden" / ".DS_Store").write_bytes(b"x")  # ignored by default, but still content
    for name in ("old/deeper", "old", "busy", "hidden"):
        age(root / name, EMPTY_FOLDER_GRACE + 60)
    age(root, EMPTY_FOLDER_GRACE + 60)
    return root


def test_only_old_empty_subfolders_go_and_files_are_still_found(drop, tmp_path):
    found = list(connector(drop, tmp_path).scan())
    assert found == [str(drop / "busy" / "a.pdf")]
    assert not (drop / "old" / "deeper").exists()
    assert (drop / "old").is_dir(), "its child just went, so it counts as touched now"
    assert (drop / "fresh").is_dir() and (drop / "hidden" / ".DS_Store").exists()
    assert drop.is_dir()

    age(drop / "old", EMPTY_FOLDER_GRACE + 60)
    list(connector(drop, tmp_path).scan())
    assert not (drop / "old").exists()


@pytest.mark.parametrize("options", [{"after": "keep"}, {"remove_empty_folders": False}])
def test_nothing_is_pruned_when_the_layout_is_the_users(drop, tmp_path, options):
    list(connector(drop, tmp_path, **options).scan())
    assert (drop / "old" / "deeper").is_dir()


def test_an_empty_drop_folder_itself_stays(tmp_path):
    root = tmp_path / "drop"
    root.mkdir()
    age(root, EMPTY_FOLDER_GRACE + 60)
    assert list(connector(root, tmp_path).scan()) == []
    assert root.is_dir()
