"""The state every part of a resource's daemon shares, and the parts wired together.

Why one object: DRBD's state (role, connection, disk, peer's disk) changes under one lock and
every change is one event, whoever causes it -- the link, a resync, a command, an I/O error.
The parts (``disk``, ``io``, ``conn``, ``resync``, ``roles``, ``control``) keep their own
bookkeeping and reach the shared state and each other through this object.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

from lab.replicator import fusedev
from lab.replicator.connection import Connection
from lab.replicator.control import Control
from lab.replicator.datapath import DataPath
from lab.replicator.disk import LocalDisk
from lab.replicator.events import EventLog
from lab.replicator.metadata import BLOCK, Metadata
from lab.replicator.paths import EVENTS_LOG, run_paths
from lab.replicator.resfile import Resource
from lab.replicator.resize import Resize
from lab.replicator.resync import Resync
from lab.replicator.roles import Roles
from lab.replicator.verify import Verify

CONNECTED = frozenset({"Connected", "SyncSource", "SyncTarget", "VerifyS", "VerifyT"})


class Replicator:
    def __init__(self, res: Resource, hostname: str, records: str | None = None) -> None:
        self.res = res
        self.me = res.host(hostname)
        self.peer = res.peer_of(hostname)
        self.hostname = hostname
        self.records = records
        self.ctl_path, self.mnt, _ = run_paths(res.name)
        # a name unique to this run: once the mount is gone (crash), a loop device still over it
        # shows ``/<name>`` as its backing file, which is how cleanup recognises it
        self.fuse_name = f"{res.name}-{hostname}-{os.urandom(4).hex()}"
        self.fuse_file = f"{self.mnt}/{self.fuse_name}"
        self.events = EventLog(EVENTS_LOG, res.name, hostname)
        self.lock = threading.RLock()  # state
        self.io_lock = threading.Lock()  # orders writes and resync reads on the wire
        self.role = "Secondary"
        self.cstate = "StandAlone"
        self.peer_role = "Unknown"
        self.pdsk = "DUnknown"
        self.dstate = "Diskless"
        self.fd: int | None = None  # the attached backing image and its metadata
        self.md: Metadata | None = None
        self.size = 0
        self.split_brain: dict[str, Any] = {}
        self.stopping = False
        self.disk = LocalDisk(self)
        self.io = DataPath(self)
        self.resync = Resync(self)
        self.verify = Verify(self)
        self.resize = Resize(self)
        self.roles = Roles(self)
        self.control = Control(self)
        self.conn = Connection(self)  # last: it routes the peer's frames to the parts above
        self.fuse = fusedev.FuseFile(self.io, self.mnt, self.fuse_name, f"drbd-{res.name}",
                                     writeback=os.environ.get("HAPAIR_REPL_WRITEBACK") == "1")

    # == state & events ===========================================================================
    @property
    def oos_kib(self) -> int:
        return (self.md.dirty_blocks * BLOCK // 1024) if self.md else 0

    def connected(self) -> bool:
        return self.conn.link is not None and self.cstate in CONNECTED

    def state(self) -> dict[str, Any]:
        with self.lock:
            st: dict[str, Any] = {
                "role": self.role,
                "peer_role": self.peer_role,
                "cstate": self.cstate,
                "dstate": self.dstate,
                "pdsk": self.pdsk,
                "out_of_sync_kib": self.oos_kib,
                "minor": self.me.minor,
                "device": self.me.device,
                "loop": self.roles.loop_dev,
                "fuse": self.fuse.mounted.is_set(),
                "size_kib": self.size >> 10,
                "io_stats": self.io.io_stats(),
            }
            if self.md:
                st["uuids"] = {"current": f"{self.md.sb.current:016X}",
                               "bitmap": f"{self.md.sb.bitmap:016X}",
                               "history": [f"{h:016X}" for h in self.md.sb.history]}
            st.update(self.resync.state())
            st.update(self.verify.state())
            if self.split_brain:
                st["split_brain"] = self.split_brain
            return st

    def emit(self, event: str = "change", **fields: Any) -> None:
        st = self.state()
        st.pop("uuids", None)
        st.pop("io_stats", None)
        self.events.emit(event, **{**st, **fields})

    def log(self, msg: str) -> None:
        print(f"[{time.clock_gettime(time.CLOCK_MONOTONIC):.3f}] {self.res.name}: {msg}",
              flush=True)

    def set_state(self, **changes: str) -> None:
        with self.lock:
            changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
            for k, v in changed.items():
                setattr(self, k, v)
            if "dstate" in changed and self.md and changed["dstate"] != "Diskless":
                self.md.set_disk(changed["dstate"])
        if changed:
            self.log("state " + " ".join(f"{k}:{v}" for k, v in changed.items()))
            self.emit("change")

    # == handlers =================================================================================
    def run_handler(self, name: str) -> None:
        """A ``handlers { }`` command, in the background like DRBD's helpers."""
        cmd = self.res.handlers.get(name)
        self.events.emit("helper", helper=name, configured=cmd is not None, role=self.role,
                         cstate=self.cstate, dstate=self.dstate)
        if not cmd:
            return
        env = dict(os.environ)
        env.update({"DRBD_RESOURCE": self.res.name, "DRBD_MINOR": str(self.me.minor),
                    "DRBD_CONF": self.res.file, "DRBD_PEER_ADDRESS": self.peer.address,
                    "DRBD_PEER_AF": "ipv4", "DRBD_LL_DISK": self.me.disk,
                    "DRBD_MY_ADDRESS": self.me.address, "DRBD_MY_AF": "ipv4"})

        def run() -> None:
            self.log(f"helper command: {name}")
            try:
                # in the node's own mount namespace (PID 1's), not the daemon's private copy
                r = subprocess.run(["nsenter", "--mount=/proc/1/ns/mnt", "sh", "-c", cmd],
                                   env=env, timeout=120,
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True)
                rc = r.returncode
                for line in (r.stdout + r.stderr).splitlines()[-20:]:
                    self.log(f"helper {name}: {line}")
            except subprocess.TimeoutExpired:
                rc = -1
            self.log(f"helper command: {name} exit code {rc}")
            self.events.emit("helper-done", helper=name, exit_code=rc)

        threading.Thread(target=run, name=f"helper-{name}", daemon=True).start()
