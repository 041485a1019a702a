"""The per-node replicator: one process per resource, started by ``drbdadm up``/``attach``.

It serves the node's copy of the resource as one file through FUSE (``fusedev``), backed by the
local image (``disk``), and mirrors every write to the peer over TCP at the ``.res`` addresses
(``connection``, ``datapath``) with protocol C: a write completes only after the peer has
written it; flushes are forwarded. When the peer cannot be reached the write completes locally
and its blocks are marked out of sync in the on-disk bitmap, so a reconnect resyncs only those
(``resync``). State changes go to an events2-like JSON stream; ``drbdadm`` talks to the daemon
through a Unix control socket (``control``). This module only wires the parts and starts them.

Threads: the FUSE reader (main thread), the control server, the connector (listen/connect +
handshake), one receiver per live link, the pinger (and request watchdog) and, while
SyncSource, the resync sender.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading

from lab.replicator import device
from lab.replicator.core import Replicator
from lab.replicator.paths import RUN_DIR
from lab.replicator.resfile import load_dir

CLONE_NEWNS = 0x00020000


def serve(r: Replicator, connect: bool) -> None:
    _unmount_stale(r.mnt)
    os.makedirs(r.mnt, exist_ok=True)
    r.disk.attach()
    r.emit("exists")
    threading.Thread(target=r.control.server, daemon=True, name="control").start()
    threading.Thread(target=r.conn.connector, daemon=True, name="connector").start()
    threading.Thread(target=r.conn.pinger, daemon=True, name="pinger").start()
    device.make_secondary_node(r.me.device, r.fuse_file)
    if connect:
        r.control.command({"cmd": "connect"})
    r.fuse.serve()  # until ``down`` sends SIGTERM
    r.log("FUSE loop ended")
    r.stopping = True


def _unmount_stale(mnt: str) -> None:
    """A daemon killed with -9 leaves its FUSE mount behind ("Transport endpoint...")."""
    with open("/proc/self/mounts") as f:
        if f" {mnt} " in f.read():
            subprocess.run(["umount", "-l", mnt], capture_output=True)


def private_mount_namespace() -> None:
    """Leave the node's mount namespace for a private copy, before any thread exists.

    Why: if the daemon held the node's namespace, its own exit could be the one that tears it
    down, unmounting the ext4 on /dev/drbdN -- whose final flush goes through the loop device to
    this very FUSE server, which is exiting: an unkillable D-state wait. In a copy made before
    anything is mounted on the device, the daemon's exit never unmounts that filesystem. The
    FUSE mount still appears in the node: ``drbdadm`` made ``/run/drbd`` a shared mount, so the
    mount under it propagates back to the node's namespace.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resource", required=True)
    ap.add_argument("--config-dir", default="/etc/drbd.d")
    ap.add_argument("--no-connect", action="store_true")
    ap.add_argument("--records", default=os.environ.get("HAPAIR_LAB_RECORDS"))
    args = ap.parse_args(argv)
    # the FUSE reader, the receiver and the resync sender hand work to each other constantly:
    # a short GIL switch interval keeps a woken thread from waiting out another's time slice
    sys.setswitchinterval(float(os.environ.get("HAPAIR_REPL_SWITCH_INTERVAL", "0.0002")))
    private_mount_namespace()
    res = load_dir(args.config_dir)[args.resource]
    r = Replicator(res, socket.gethostname(), args.records)
    os.makedirs(RUN_DIR, exist_ok=True)
    serve(r, connect=not args.no_connect)
    return 0


if __name__ == "__main__":
    sys.exit(main())
