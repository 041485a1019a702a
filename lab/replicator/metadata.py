"""On-disk metadata of one node's copy ("meta-disk internal": kept at the end of the image).

Why on disk, and why these pieces: after a crash or a cable cut the handshake must decide who
has the newer data (generation UUIDs), whether this node went down while Primary (the
primary indicator becomes DRBD's "crashed primary"), which blocks differ (the dirty bitmap) and
which blocks may have been in flight when it went down (the activity log). All of it must
survive ``kill -9``, so every change that matters is written with ``pwrite`` + ``fdatasync``
before the I/O it protects completes.

Layout at the end of the image (offsets relative to ``md_offset``)::

    0      superblock: magic, length, crc32, JSON (uuids, flags, disk state, sizes)
    4 KiB  activity log: magic, count, up to 500 extent numbers (u64)
    8 KiB  bitmap: one bit per 4 KiB block of the data area
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from dataclasses import asdict, dataclass, field

from lab.replicator.handshake import UUID_JUST_CREATED, Uuids

BLOCK = 4096
AL_EXTENT = 4 * 1024 * 1024  # DRBD's activity-log extent size
AL_SLOTS = 500
MAGIC = b"HAPDRBD1"
AL_MAGIC = b"HAPDRAL1"
SB_SIZE = 4096
AL_OFFSET = 4096
BM_OFFSET = 8192


class MetadataError(RuntimeError):
    pass


def md_size_for(image_size: int) -> int:
    """Bytes reserved at the end of an image of ``image_size`` bytes."""
    blocks = image_size // BLOCK
    bm_bytes = (blocks + 7) // 8
    return BM_OFFSET + ((bm_bytes + BLOCK - 1) // BLOCK) * BLOCK


def data_size_for(image_size: int) -> int:
    return ((image_size - md_size_for(image_size)) // BLOCK) * BLOCK


@dataclass
class Superblock:
    current: int = UUID_JUST_CREATED
    bitmap: int = 0
    history: list[int] = field(default_factory=lambda: [0, 0])
    disk: str = "Inconsistent"  # persisted: UpToDate | Consistent | Outdated | Inconsistent
    primary_ind: bool = False  # set while Primary: found set at attach = crashed primary
    crashed_primary: bool = False
    data_size: int = 0
    block_size: int = BLOCK

    @property
    def uuids(self) -> Uuids:
        return Uuids(self.current, self.bitmap, (self.history[0], self.history[1]))


class Metadata:
    """The metadata area of one open image; thread-safe, every mutation persisted."""

    def __init__(self, fd: int, image_size: int, data_size: int | None = None) -> None:
        self.fd = fd
        self.image_size = image_size
        # the metadata sits at the end of the image; the data area may be smaller than the
        # space before it (after a resize agreed on the smaller of two disks)
        self.md_offset = data_size_for(image_size)
        self.data_size = self.md_offset if data_size is None else data_size
        self.blocks = self.data_size // BLOCK
        self.lock = threading.RLock()
        self.sb = Superblock(data_size=self.data_size)
        self.bitmap = bytearray((self.blocks + 7) // 8)
        self.al: list[int] = []  # hot extents, most recent last
        self._al_set: set[int] = set()
        self._bits = 0

    # -- creation / loading ----------------------------------------------------------------------
    @classmethod
    def create(cls, fd: int, image_size: int) -> Metadata:
        """``drbdadm create-md``: fresh UUIDs (just created), Inconsistent, empty bitmap."""
        md = cls(fd, image_size)
        if md.data_size <= 0:
            raise MetadataError(f"image of {image_size} bytes is too small for metadata")
        md.write_superblock()
        md.write_al()
        os.pwrite(fd, bytes(len(md.bitmap)), md.md_offset + BM_OFFSET)
        os.fdatasync(fd)
        return md

    @classmethod
    def load(cls, fd: int, image_size: int) -> Metadata:
        md = cls(fd, image_size)
        raw = os.pread(fd, SB_SIZE, md.md_offset)
        if raw[:8] != MAGIC:
            raise MetadataError("no valid meta-data signature found; run 'drbdadm create-md'")
        length, crc = struct.unpack_from("!II", raw, 8)
        body = raw[16 : 16 + length]
        if zlib.crc32(body) != crc:
            raise MetadataError("meta-data superblock checksum mismatch")
        sb = Superblock(**json.loads(body))
        if sb.data_size > md.md_offset:
            raise MetadataError(f"meta-data says {sb.data_size} bytes, image holds "
                                f"{md.md_offset}")
        md = cls(fd, image_size, sb.data_size)
        md.sb = sb
        md.bitmap = bytearray(os.pread(fd, len(md.bitmap), md.md_offset + BM_OFFSET))
        md._bits = sum(bin(b).count("1") for b in md.bitmap)
        al_raw = os.pread(fd, BLOCK, md.md_offset + AL_OFFSET)
        if al_raw[:8] == AL_MAGIC:
            (count,) = struct.unpack_from("!I", al_raw, 8)
            md.al = list(struct.unpack_from(f"!{count}Q", al_raw, 12))
            md._al_set = set(md.al)
        return md

    def attach_recovery(self) -> bool:
        """At attach: a set primary indicator means this node went down while Primary.

        Like DRBD, mark every block of the activity log's extents out of sync (they may hold
        writes the peer never saw) and remember "crashed primary" for the handshake.
        """
        with self.lock:
            if not self.sb.primary_ind:
                return False
            for ext in self.al:
                first = ext * (AL_EXTENT // BLOCK)
                for b in range(first, min(first + AL_EXTENT // BLOCK, self.blocks)):
                    self._set(b)
            self.write_bitmap()
            self.sb.crashed_primary = True
            self.sb.primary_ind = False
            self.al, self._al_set = [], set()
            self.write_al()
            self.write_superblock()
            return True

    # -- superblock ------------------------------------------------------------------------------
    def write_superblock(self) -> None:
        with self.lock:
            body = json.dumps(asdict(self.sb), sort_keys=True).encode()
            raw = MAGIC + struct.pack("!II", len(body), zlib.crc32(body)) + body
            if len(raw) > SB_SIZE:
                raise MetadataError("superblock overflow")
            os.pwrite(self.fd, raw.ljust(SB_SIZE, b"\0"), self.md_offset)
            os.fdatasync(self.fd)

    def set_uuids(self, current: int | None = None, bitmap: int | None = None,
                  history: tuple[int, int] | None = None) -> None:
        with self.lock:
            if current is not None:
                self.sb.current = current
            if bitmap is not None:
                self.sb.bitmap = bitmap
            if history is not None:
                self.sb.history = list(history)
            self.write_superblock()

    def new_current_uuid(self, primary: bool) -> None:
        """DRBD's ``drbd_uuid_new_current``: the old current becomes the bitmap UUID."""
        with self.lock:
            self.sb.bitmap = self.sb.current
            self.sb.current = (int.from_bytes(os.urandom(8), "big") & ~1) | (1 if primary else 0)
            self.write_superblock()

    def clear_bitmap_uuid(self) -> None:
        """DRBD's ``drbd_uuid_set_bm(0)``: the bitmap UUID moves into history."""
        with self.lock:
            if self.sb.bitmap:
                self.sb.history = [self.sb.bitmap, self.sb.history[0]]
            self.sb.bitmap = 0
            self.write_superblock()

    def set_primary_flag(self, primary: bool) -> None:
        """The current UUID's lowest bit and the primary indicator follow the role."""
        with self.lock:
            self.sb.current = (self.sb.current & ~1) | (1 if primary else 0)
            self.sb.primary_ind = primary
            if not primary:
                self.al, self._al_set = [], set()
                self.write_al()
            self.write_superblock()

    def set_disk(self, disk: str) -> None:
        with self.lock:
            if disk != self.sb.disk:
                self.sb.disk = disk
                self.write_superblock()

    def grow(self, image_size: int, data_size: int) -> range:
        """Online resize: the metadata moves to the end of the grown image and the new
        blocks are out of sync (DRBD resyncs new storage after an online grow)."""
        with self.lock:
            old = self.blocks
            self.image_size = image_size
            self.md_offset = data_size_for(image_size)
            if data_size > self.md_offset:
                raise MetadataError(f"{data_size} bytes do not fit before the metadata")
            self.data_size, self.blocks = data_size, data_size // BLOCK
            self.bitmap.extend(bytes((self.blocks + 7) // 8 - len(self.bitmap)))
            for b in range(old, self.blocks):
                self._set(b)
            self.sb.data_size = data_size
            self.write_bitmap()
            self.write_al()
            self.write_superblock()  # last: until it is there, the image has no metadata
            return range(old, self.blocks)

    # -- activity log ----------------------------------------------------------------------------
    def write_al(self) -> None:
        with self.lock:
            raw = AL_MAGIC + struct.pack(f"!I{len(self.al)}Q", len(self.al), *self.al)
            os.pwrite(self.fd, raw.ljust(BLOCK, b"\0"), self.md_offset + AL_OFFSET)
            os.fdatasync(self.fd)

    def al_touch(self, offset: int, length: int) -> None:
        """Make the extents a write covers hot before the write (persisted on change only)."""
        first, last = offset // AL_EXTENT, (offset + max(length, 1) - 1) // AL_EXTENT
        with self.lock:
            changed = False
            for ext in range(first, last + 1):
                if ext in self._al_set:
                    continue
                self.al.append(ext)
                self._al_set.add(ext)
                changed = True
                if len(self.al) > AL_SLOTS:
                    self._al_set.discard(self.al.pop(0))  # cold: its writes completed long ago
            if changed:
                self.write_al()

    # -- bitmap ----------------------------------------------------------------------------------
    def _set(self, block: int) -> bool:
        byte, bit = divmod(block, 8)
        if self.bitmap[byte] & (1 << bit):
            return False
        self.bitmap[byte] |= 1 << bit
        self._bits += 1
        return True

    def _clear(self, block: int) -> bool:
        byte, bit = divmod(block, 8)
        if not self.bitmap[byte] & (1 << bit):
            return False
        self.bitmap[byte] &= ~(1 << bit)
        self._bits -= 1
        return True

    def blocks_of(self, offset: int, length: int) -> range:
        return range(offset // BLOCK, (offset + max(length, 1) - 1) // BLOCK + 1)

    def mark_dirty(self, offset: int, length: int, persist: bool = True) -> None:
        """Blocks the peer does not have; persisted before the write completes."""
        with self.lock:
            blocks = self.blocks_of(offset, length)
            changed = [b for b in blocks if self._set(b)]
            if changed and persist:
                lo, hi = changed[0] // 8, changed[-1] // 8 + 1
                os.pwrite(self.fd, bytes(self.bitmap[lo:hi]), self.md_offset + BM_OFFSET + lo)
                os.fdatasync(self.fd)

    def clear_blocks(self, blocks: range) -> None:
        with self.lock:
            for b in blocks:
                self._clear(b)

    def set_all(self) -> None:
        with self.lock:
            for b in range(self.blocks):
                self._set(b)
            self.write_bitmap()

    def merge(self, other: bytes) -> None:
        """OR the peer's bitmap into ours (DRBD exchanges bitmaps when it connects)."""
        with self.lock:
            merged = bytearray(a | b for a, b in zip(self.bitmap, other, strict=True))
            self.bitmap = merged
            self._bits = sum(bin(b).count("1") for b in merged)
            self.write_bitmap()

    def write_bitmap(self) -> None:
        with self.lock:
            os.pwrite(self.fd, bytes(self.bitmap), self.md_offset + BM_OFFSET)
            os.fdatasync(self.fd)

    @property
    def dirty_blocks(self) -> int:
        return self._bits

    def dirty_list(self) -> list[int]:
        with self.lock:
            out = []
            for i, byte in enumerate(self.bitmap):
                if byte:
                    for bit in range(8):
                        if byte & (1 << bit) and i * 8 + bit < self.blocks:
                            out.append(i * 8 + bit)
            return out
