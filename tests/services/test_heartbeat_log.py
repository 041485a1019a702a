"""Reading from heartbeat's log whether it has begun taking a resource group (what a cold start
checks once the disk is ready), on lines recorded from a real lab's ha-log."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lab.services.heartbeat import LOG, acquired_resources

BEFORE = """\
Nov 30 13:30:03 lsvm2 heartbeat: [43]: info: Comm_now_up(): updating status to active
Nov 30 13:30:03 lsvm2 heartbeat: [43]: info: Local status now set to: 'active'
"""
TAKING = ("2026/11/30_13:30:13  ResourceManager(default)[145]:    info: Acquiring resource group:"
          " lsvm2 drbddisk::drbd0 Filesystem::/dev/drbd0::/srv/drbd0::ext4::defaults\n")


def node_with_log(root: Path, text: str | None) -> SimpleNamespace:
    def path(inside: str) -> Path:
        return root / inside.lstrip("/")
    if text is not None:
        path(LOG).parent.mkdir(parents=True)
        path(LOG).write_text(text)
    return SimpleNamespace(path=path)


def test_not_before_the_resource_group_is_acquired(tmp_path: Path) -> None:
    assert not acquired_resources(node_with_log(tmp_path, BEFORE))  # type: ignore[arg-type]


def test_once_heartbeat_takes_the_group(tmp_path: Path) -> None:
    assert acquired_resources(node_with_log(tmp_path, BEFORE + TAKING))  # type: ignore[arg-type]


def test_no_log_yet_means_nothing_taken(tmp_path: Path) -> None:
    assert not acquired_resources(node_with_log(tmp_path, None))  # type: ignore[arg-type]
