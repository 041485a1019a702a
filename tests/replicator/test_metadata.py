"""Unit tests: on-disk metadata survives reopen; DRBD's UUID moves; bitmap and activity log."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.replicator.handshake import UUID_JUST_CREATED
from lab.replicator.metadata import (
    AL_EXTENT,
    BLOCK,
    Metadata,
    MetadataError,
    data_size_for,
    md_size_for,
)

SIZE = 16 * 1024 * 1024


@pytest.fixture
def image(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "img", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, SIZE)
    yield fd
    os.close(fd)


def test_sizes_leave_room_for_the_bitmap() -> None:
    assert md_size_for(SIZE) >= 8192 + SIZE // BLOCK // 8
    assert data_size_for(SIZE) % BLOCK == 0
    assert data_size_for(SIZE) + md_size_for(SIZE) <= SIZE


def test_load_without_create_md_fails(image: int) -> None:
    with pytest.raises(MetadataError, match="create-md"):
        Metadata.load(image, SIZE)


def test_create_then_reload_round_trips(image: int) -> None:
    md = Metadata.create(image, SIZE)
    assert md.sb.current == UUID_JUST_CREATED and md.sb.disk == "Inconsistent"
    md.new_current_uuid(primary=True)
    md.set_disk("UpToDate")
    md.mark_dirty(5 * BLOCK, 3 * BLOCK)
    again = Metadata.load(image, SIZE)
    assert again.sb.current == md.sb.current and again.sb.current & 1
    assert again.sb.bitmap == UUID_JUST_CREATED
    assert again.sb.disk == "UpToDate"
    assert again.dirty_list() == [5, 6, 7] and again.dirty_blocks == 3


def test_new_current_and_clear_bitmap_uuid_follow_drbd() -> None:
    fd = os.memfd_create("md")
    os.ftruncate(fd, SIZE)
    md = Metadata.create(fd, SIZE)
    md.set_uuids(current=0x1000, bitmap=0, history=(0x10, 0x20))
    md.new_current_uuid(primary=False)
    assert md.sb.bitmap == 0x1000 and md.sb.current not in (0, 0x1000)
    assert md.sb.current & 1 == 0
    md.clear_bitmap_uuid()
    assert md.sb.bitmap == 0 and md.sb.history == [0x1000, 0x10]


def test_crashed_primary_marks_activity_log_extents(image: int) -> None:
    md = Metadata.create(image, SIZE)
    md.set_primary_flag(True)
    md.al_touch(AL_EXTENT + 10, 100)  # a write in the second 4 MiB extent
    # power loss here: reopen as the next boot would
    again = Metadata.load(image, SIZE)
    assert again.attach_recovery()
    assert again.sb.crashed_primary and not again.sb.primary_ind
    dirty = again.dirty_list()
    assert dirty[0] == AL_EXTENT // BLOCK and len(dirty) == AL_EXTENT // BLOCK
    assert not Metadata.load(image, SIZE).attach_recovery()  # only once


def test_merge_ors_the_peers_bitmap(image: int) -> None:
    md = Metadata.create(image, SIZE)
    md.mark_dirty(0, BLOCK)
    other = bytearray(len(md.bitmap))
    other[1] = 0b1
    md.merge(bytes(other))
    assert md.dirty_list() == [0, 8]
    md.clear_blocks(range(0, 9))
    assert md.dirty_blocks == 0
