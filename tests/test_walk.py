"""lab.walk: reading trees that other labs change while we read them; and the shared parents
(state directory, cgroup hierarchy top) that teardown must leave to the others."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import cgroup, state, walk


def tree(root: Path, *paths: str) -> None:
    for p in paths:
        path = root / p
        if p.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(p)


def test_walk_lists_everything_parents_first_sorted(tmp_path: Path) -> None:
    tree(tmp_path, "b/y", "a/x/deep", "a/file", "c/")
    got = [str(p.relative_to(tmp_path)) for p in walk.walk(tmp_path)]
    assert got == ["a", "a/file", "a/x", "a/x/deep", "b", "b/y", "c"]
    dirs = [str(p.relative_to(tmp_path)) for p in walk.walk(tmp_path, dirs_only=True)]
    assert dirs == ["a", "a/x", "b", "c"]


def test_walk_of_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(walk.walk(tmp_path / "absent")) == []
    assert walk.children(tmp_path / "absent") == []
    assert walk.subdirs(tmp_path / "file-not-dir") == []


def test_directory_removed_after_listing_is_skipped_not_fatal(tmp_path: Path) -> None:
    """The race of a cgroup walk: the parent was listed, then another lab removed a child
    before the walk opened it."""
    tree(tmp_path, "lab1/node/procs", "lab2/node/procs", "lab3/node/procs")
    seen = []
    for path in walk.walk(tmp_path, dirs_only=True):
        seen.append(str(path.relative_to(tmp_path)))
        if path.name == "lab1":
            shutil.rmtree(tmp_path / "lab2")  # listed with lab1, gone before it is opened
    assert seen == ["lab1", "lab1/node", "lab2", "lab3", "lab3/node"]


def test_directory_removed_while_being_walked(tmp_path: Path) -> None:
    tree(tmp_path, "lab1/a/x", "lab1/b/y")
    seen = []
    for path in walk.walk(tmp_path):
        seen.append(str(path.relative_to(tmp_path)))
        if path.name == "a":
            shutil.rmtree(tmp_path / "lab1")  # the directory we are inside of goes away
    assert seen == ["lab1", "lab1/a", "lab1/b"]


def test_entries_that_appear_mid_walk_do_not_break_it(tmp_path: Path) -> None:
    tree(tmp_path, "a/", "b/")
    seen = []
    for path in walk.walk(tmp_path, dirs_only=True):
        seen.append(path.name)
        (tmp_path / "b" / f"new-{len(seen)}").mkdir()
    assert seen[:2] == ["a", "b"] and set(seen) <= {"a", "b", "new-1", "new-2", "new-3"}


def test_vanished_errors_mean_empty_other_errors_still_raise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOENT/ENOTDIR/ESRCH/ENODEV say "gone"; anything else (EACCES, EIO) is a real problem."""
    def failing(code: int) -> Iterator[os.DirEntry[str]]:
        raise OSError(code, os.strerror(code))

    for code in (errno.ENOENT, errno.ENOTDIR, errno.ESRCH, errno.ENODEV):
        monkeypatch.setattr(os, "scandir", lambda _p, c=code: failing(c))
        assert walk.entries(tmp_path) == []
    monkeypatch.setattr(os, "scandir", lambda _p: failing(errno.EIO))
    with pytest.raises(OSError):
        walk.entries(tmp_path)


def test_entry_whose_type_cannot_be_read_counts_as_not_a_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, "a/", "b/")
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.name, self.path = entry.name, entry.path

        def is_dir(self, follow_symlinks: bool = True) -> bool:
            raise FileNotFoundError(self.path)

    class Listing:
        def __init__(self, path: Path) -> None:
            self.it = real_scandir(path)

        def __enter__(self) -> Iterator[object]:
            return iter([Vanishing(e) if e.name == "a" else e for e in self.it])

        def __exit__(self, *exc: object) -> None:
            self.it.close()

    monkeypatch.setattr(os, "scandir", Listing)
    assert [p.name for p in walk.subdirs(tmp_path)] == ["b"]


def test_read_text_of_vanished_file_is_none(tmp_path: Path) -> None:
    assert walk.read_text(tmp_path / "gone") is None
    assert walk.read_bytes(tmp_path / "gone") is None
    (tmp_path / "here").write_text("x")
    assert walk.read_text(tmp_path / "here") == "x"
    assert walk.read_text(Path(f"/proc/{2**22 + 1}/cmdline")) is None  # beyond pid_max


def test_teardown_leaves_the_shared_state_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A parallel Lab.create makes labs_dir() and then its own directory below it: the last
    lab's teardown must not remove labs_dir() in between."""
    monkeypatch.setenv("HAPAIR_LAB_ROOT", str(tmp_path / "root"))
    lab_dir = state.labs_dir() / "x1"
    lab_dir.mkdir(parents=True)
    (lab_dir / "lab.json").write_text("{}")
    state.teardown("x1")
    assert not lab_dir.exists()
    assert state.labs_dir().is_dir() and state.known_labs() == []


def test_known_labs_ignores_a_state_directory_that_vanished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAPAIR_LAB_ROOT", str(tmp_path / "never-made"))
    assert state.known_labs() == []
    assert list(state.lab_cgroups("x1")) == []


def test_cgroup_parents_stay_inside_their_own_hierarchy() -> None:
    root = cgroup.V1_ROOT
    top = root / cgroup.TOP
    assert cgroup.lab_parents(top / "lab1" / "switch") == [top / "lab1", top]
    assert cgroup.lab_parents(top / "lab1") == [top]
    assert cgroup.lab_parents(top) == []
    private = root / f"{cgroup.TOP}-0123456789"
    assert cgroup.lab_parents(private / "k0" / "n") == [private / "k0", private]
    assert cgroup.lab_parents(root / "somebody-else" / "x") == []
    assert cgroup.hierarchy_top(root / "hapair-labs-not-ours" / "x") is None
