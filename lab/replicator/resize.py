"""``drbdadm resize``: grow the device online after both backing disks grew.

Why both nodes agree first: DRBD never makes the device larger than the smaller disk, so the
node asked sends its capacity, the peer grows to the smaller of the two and answers, then the
asking node grows too. The new storage is out of sync on both and resynced from the Primary
(or, between equals, from the node asked) while connected -- DRBD's "Resync of new storage
after online grow" -- and the loop device under ``/dev/drbdN`` learns its new capacity from
its holder, never from this daemon.
"""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

from lab.replicator import wire
from lab.replicator.control import CommandError
from lab.replicator.metadata import data_size_for

if TYPE_CHECKING:
    from lab.replicator.core import Replicator


class Resize:
    def __init__(self, r: Replicator) -> None:
        self.r = r

    def capacity(self) -> int:
        """The largest data area this node's backing disk holds now."""
        fd = self.r.fd
        if fd is None:
            return 0
        st = os.fstat(fd)
        size = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size
        return data_size_for(size)

    def command(self) -> dict[str, int]:
        r = self.r
        link = r.conn.link
        if r.md is None:
            raise CommandError(10, "Failure: (138) Device has no disk")
        if link is None or not r.connected():
            raise CommandError(10, "Failure: resize needs the peer connected (this lab does "
                                   "not implement --assume-peer-has-space)")
        if r.cstate != "Connected":
            raise CommandError(10, "Failure: resize not allowed during resync or verify")
        source = "me" if r.role == "Primary" or r.peer_role != "Primary" else "you"
        pend = r.conn.request(link, wire.RESIZE_REQ,
                              wire.json_bytes({"max": self.capacity(), "source": source}), 0,
                              range(0))
        if not r.conn.wait(pend):
            raise CommandError(10, "Failure: the peer did not agree on a size")
        agreed = int(json.loads(pend.data)["size"])
        grew = self.apply(agreed)
        if grew:
            if source == "me":
                self.resync_new_storage(link)
            else:
                link.send(wire.RESIZE_SYNC)
        return {"size": r.size}

    def apply(self, size: int) -> bool:
        """Grow this node to ``size``; False if it already is that large."""
        r = self.r
        with r.io_lock, r.lock:  # no I/O in flight while the metadata moves
            md, fd = r.md, r.fd
            if md is None or fd is None or size <= md.data_size:
                return False
            st = os.fstat(fd)
            image = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size
            new = md.grow(image, size)
            r.size = size
        r.fuse.invalidate_attributes()
        r.roles.grow_device()
        r.log(f"size = {size >> 20} MB ({size >> 10} KB); {len(new)} new blocks out of sync")
        r.events.emit("resized", size_kib=size >> 10, new_kib=len(new) * 4, role=r.role,
                      cstate=r.cstate, dstate=r.dstate, out_of_sync_kib=r.oos_kib)
        return True

    def resync_new_storage(self, link: wire.Link) -> None:
        r = self.r
        md = r.md
        if md is None or r.conn.link is not link:
            return
        r.log("Resync of new storage after online grow")
        r.resync.begin_source(link, md, False)
        r.resync.start_sender(link)

    # == the peer's side ==========================================================================
    def on_request(self, link: wire.Link, f: wire.Frame) -> None:
        """Runs in the receiver: answers with the agreed size after growing to it."""
        p = f.json()
        self.apply(min(int(p["max"]), self.capacity()))
        link.send(wire.RESIZE_DONE, wire.json_bytes({"size": self.r.size}), f.seq)

    def on_sync(self, link: wire.Link, _f: wire.Frame) -> None:
        self.resync_new_storage(link)
