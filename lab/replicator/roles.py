"""Primary and Secondary: DRBD's rules for changing role, and ``/dev/drbdN`` appearing with it.

Why the loop device is set up by a child (``loopholder``) and only here, in the control
thread: setting it up opens the FUSE file, which the FUSE thread must be free to answer.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from lab.replicator import device
from lab.replicator.control import CommandError

if TYPE_CHECKING:
    from lab.replicator.core import Replicator


class Roles:
    def __init__(self, r: Replicator) -> None:
        self.r = r
        self.loop_dev: str | None = None
        self.holder: subprocess.Popen[str] | None = None

    def busy(self) -> str | None:
        """Why the device cannot be given up (mounted, opened), or None."""
        if self.loop_dev is None:
            return None
        holder = self.holder.pid if self.holder is not None else None
        return device.in_use(self.loop_dev, exclude=holder)

    def primary(self, force: bool) -> None:
        r = self.r
        # a role change waits for a handshake in flight, as DRBD serialises state changes
        deadline = time.monotonic() + max(r.res.timeout_s, 1.0)
        while r.cstate == "WFReportParams" and time.monotonic() < deadline:
            time.sleep(0.02)
        with r.lock:
            if r.role == "Primary":
                return
            if r.md is None or r.dstate == "Diskless":
                raise CommandError(17, "State change failed: (-2) Need access to UpToDate data")
            if r.peer_role == "Primary" and r.res.net_opt("allow-two-primaries") != "yes":
                raise CommandError(11, "State change failed: (-1) Multiple primaries not "
                                       "allowed by config")
            if not force and (r.cstate == "SyncTarget"
                              or r.dstate in ("Inconsistent", "Outdated")):
                raise CommandError(17, "State change failed: (-2) Need access to UpToDate data")
            md = r.md
            was_connected = r.connected()
            if force or (not was_connected and md.sb.bitmap == 0):
                md.new_current_uuid(primary=True)
            r.role = "Primary"
            md.set_primary_flag(True)
        try:
            self._expose()
        except (OSError, device.DeviceError) as e:
            with r.lock:
                r.role = "Secondary"
                md.set_primary_flag(False)
            raise CommandError(10, f"cannot expose {r.me.device}: {e}") from e
        if (force and r.dstate != "UpToDate") or r.dstate == "Consistent":
            r.set_state(dstate="UpToDate")
        r.log("role Primary")
        r.emit("change")
        r.conn.send_state()
        if force and was_connected and r.pdsk in ("Inconsistent", "Outdated", "UpToDate"):
            # --overwrite-data-of-peer: reconnect so the handshake starts a full sync from here
            md.set_all()
            link = r.conn.link
            if link is not None:
                r.conn.link_lost(link, "overwrite-data-of-peer: forcing full sync")

    def secondary(self) -> None:
        r = self.r
        with r.lock:
            if r.role != "Primary":
                return
            if self.busy() is not None:
                raise CommandError(11, "State change failed: (-12) Device is held open by "
                                       "someone")
        self.demote()
        r.conn.send_state()

    def demote(self) -> None:
        r = self.r
        self._unexpose()
        with r.lock:
            r.role = "Secondary"
            if r.md is not None:
                r.md.set_primary_flag(False)
        r.log("role Secondary")
        r.emit("change")

    def _expose(self) -> None:
        """A self-clearing loop device held by ``loopholder``, then ``/dev/drbdN`` over it."""
        r = self.r
        holder = subprocess.Popen([sys.executable, "-m", "lab.replicator.loopholder",
                                   r.fuse_file], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stderr is not None
        loop = holder.stdout.readline().strip()
        if not loop.startswith("/dev/loop"):
            holder.wait(10)
            raise device.DeviceError(f"loop device over {r.fuse_file}: "
                                     f"{holder.stderr.read().strip()[-300:]}")
        self.holder = holder
        backing = device.loop_backing(loop) or r.fuse_file
        if r.records:
            _record(r.records, {"kind": "loop", "device": loop, "backing": backing,
                                "node": r.hostname, "resource": r.res.name})
        self.loop_dev = loop
        device.make_block_node(r.me.device, loop)

    def grow_device(self) -> None:
        """Ask the loop device's holder to re-read the file's size (LOOP_SET_CAPACITY)."""
        holder = self.holder
        if holder is None or holder.stdout is None:
            return
        holder.send_signal(signal.SIGUSR1)  # our own child, by its Popen
        ready, _, _ = select.select([holder.stdout], [], [], 10.0)
        line = holder.stdout.readline().strip() if ready else ""
        self.r.log(f"loop device {self.loop_dev}: {line or 'no answer to the capacity change'}")

    def _unexpose(self) -> None:
        r = self.r
        loop, self.loop_dev = self.loop_dev, None
        holder, self.holder = self.holder, None
        device.make_secondary_node(r.me.device, r.fuse_file)
        if holder is not None:
            holder.terminate()  # our own child, by its Popen: autoclear detaches the loop
            holder.wait(10)
        if loop is not None and device.loop_backing(loop) == r.fuse_file:
            device.detach_loop(loop)  # still bound (autoclear raced an opener): detach now


def _record(path: str, entry: dict[str, Any]) -> None:
    """Append to the lab's cleanup journal (same format as lab.state.Records)."""
    line = json.dumps(entry, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
