"""The labs directory is marked as the top of directory hierarchies where the filesystem can."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest

from lab.state import FS_IOC_GETFLAGS, FS_TOPDIR_FL, make_labs_dir


def flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return int(struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS,
                                                  struct.pack("l", 0)))[0])
    finally:
        os.close(fd)


def test_made_once_flagged_and_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("HAPAIR_LAB_ROOT", str(tmp_path / "root"))
    made = make_labs_dir()
    assert made == tmp_path / "root" / "labs" and made.is_dir()
    assert oct(made.stat().st_mode & 0o777) == oct(0o700)
    try:
        flagged = flags(made) & FS_TOPDIR_FL
    except OSError:
        pytest.skip("this filesystem has no inode flags")
    if not flagged:
        pytest.skip("this filesystem ignores the top-directory flag")
    (made / "kept").mkdir()
    assert make_labs_dir() == made and (made / "kept").is_dir()  # again: nothing changes
