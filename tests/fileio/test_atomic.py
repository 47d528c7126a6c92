"""Atomic writes: a failed or killed writer leaves the previous file or dir."""

from pathlib import Path

import pytest

from espnet2_ext.fileio.atomic import atomic_dir, atomic_path, write_lines_atomically, write_text_atomically


def test_write_text_atomically_replaces_the_file(tmp_path: Path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomically(path, "old")
    write_text_atomically(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_atomic_dir_swaps_in_the_complete_dir(tmp_path: Path):
    final = tmp_path / "train"
    with atomic_dir(final) as tmp:
        (tmp / "segments").write_text("old\n")
    with atomic_dir(final) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "text").write_text("new\n")
        assert (final / "segments").read_text() == "old\n"
    assert [p.name for p in final.iterdir()] == ["text"]
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_failed_atomic_dir_keeps_previous_dir(tmp_path: Path):
    final = tmp_path / "train"
    with atomic_dir(final) as tmp:
        (tmp / "segments").write_text("old\n")
    with pytest.raises(OSError):
        with atomic_dir(final) as tmp:
            (tmp / "segments").write_text("new\n")
            raise OSError("disk full")
    assert (final / "segments").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_atomic_dir_removes_a_killed_run_s_leftovers(tmp_path: Path):
    for leftover in (".train.tmp", ".train.old"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "junk").write_text("from a killed run")
    with atomic_dir(tmp_path / "train") as tmp:
        (tmp / "segments").write_text("new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_write_lines_atomically_ends_every_line(tmp_path: Path):
    path = tmp_path / "text"
    write_lines_atomically(path, (f"utt{i} word" for i in range(3)))
    assert path.read_bytes() == b"utt0 word\nutt1 word\nutt2 word\n"
    assert [p.name for p in tmp_path.iterdir()] == ["text"]


def test_atomic_path_keeps_the_replaced_file_s_permissions(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o600)
    write_text_atomically(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o600


def test_atomic_path_without_parents_does_not_create_the_directory(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "no" / "a.txt", parents=False) as tmp:
            tmp.write_text("new")
    assert list(tmp_path.iterdir()) == []
