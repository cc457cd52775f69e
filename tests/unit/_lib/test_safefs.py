"""Walking a tree others can write: nothing outside it is ever reached by name."""

import errno
import os

import pytest

from ingestd._lib.safefs import EMPTY, Dir, TooDeep, identity, walk_files


def test_a_symlink_on_the_way_is_never_followed(tmp_path):
    (tmp_path / "root" / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"s")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with Dir.open(tmp_path / "root") as root:
        with pytest.raises(OSError) as exc:
            root.walk(["link"])
        assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
        for bad in ("..", ".", "", "a/b"):
            with pytest.raises(OSError):
                root.walk([bad])
        with root.walk(["real"]) as real:
            with pytest.raises(OSError) as exc:
                real.open_file("missing-or-link", os.O_RDONLY)
            assert exc.value.errno == errno.ENOENT


def test_a_held_folder_keeps_pointing_at_the_same_folder(tmp_path):
    """Renamed and replaced by a symlink after it was opened: operations stay in the folder
    that was opened (inside the tree when it was walked), never follow the new name."""
    (tmp_path / "root" / "d").mkdir(parents=True)
    (tmp_path / "root" / "d" / "f").write_bytes(b"inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_bytes(b"outside")
    with Dir.open(tmp_path / "root") as root, root.walk(["d"]) as d:
        os.rename(tmp_path / "root" / "d", tmp_path / "root" / "d.away")
        (tmp_path / "root" / "d").symlink_to(tmp_path / "outside")
        fd = d.open_file("f", os.O_RDONLY)
        assert os.read(fd, 100) == b"inside"
        os.close(fd)


def test_creating_folders_refuses_a_planted_symlink(tmp_path):
    (tmp_path / "state" / "processed").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state" / "processed" / "inbox").symlink_to(tmp_path / "elsewhere")
    with Dir.open(tmp_path / "state") as state:
        with pytest.raises(OSError):
            state.walk(["processed", "inbox", "job"], create=True)
        with state.walk(["processed", "other", "job"], create=True) as made:
            assert identity(made.fstat())[1] == os.stat(tmp_path / "state" / "processed" / "other" / "job").st_ino
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_walk_files_reports_each_problem_and_goes_on(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.txt").write_bytes(b"1")
    (root / "empty").mkdir()
    (root / "deep" / "x" / "y").mkdir(parents=True)
    (root / "deep" / "x" / "y" / "z.txt").write_bytes(b"z")
    (root / "link").symlink_to(root / "a")
    (root / "z.txt").write_bytes(b"z")
    with Dir.open(root) as tree:
        found = [(parts, kind if not isinstance(kind, OSError) else type(kind).__name__)
                 for _, parts, kind in walk_files(tree, max_depth=2)]
    assert found == [(["a", "1.txt"], None), (["deep", "x", "y"], "TooDeep"), (["empty"], EMPTY),
                     (["link"], None), (["z.txt"], None)]
    assert issubclass(TooDeep, OSError)
