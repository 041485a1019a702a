"""A safety net for FUSE-backed disks when a node dies.

The replicated disk is ext4 on a loop device over a file that a FUSE daemon inside the node
serves. If the daemon dies while the kernel still has to write to that file (the last process
of a mount namespace unmounting ext4 as it exits, say), the writer can wait on a daemon that
will never answer, and every host-wide `sync()` then waits behind it -- heartbeat calls sync()
at start-up, so one stuck lab would stop every other lab from starting. Before a node's
processes are killed the lab notes which FUSE connections they have mounted; if any process
is still there after SIGKILL, those connections (and only those) are aborted through fusectl,
mounted in a private mount namespace so the root namespace gains nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

FUSE_MAJOR = 0  # FUSE mounts use anonymous devices: major 0, minor = connection id


def connections_of(pids: Iterable[int]) -> set[int]:
    """FUSE connection ids mounted in the mount namespaces of `pids`."""
    ids: set[int] = set()
    seen_ns: set[str] = set()
    for pid in pids:
        try:
            ns = str(Path(f"/proc/{pid}/ns/mnt").readlink())
            if ns in seen_ns:
                continue
            seen_ns.add(ns)
            lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split(" - ", 1)
            if len(fields) != 2 or not fields[1].startswith("fuse"):
                continue
            major, _, minor = line.split()[2].partition(":")
            if major == str(FUSE_MAJOR) and minor.isdigit():
                ids.add(int(minor))
    return ids


def abort(ids: Iterable[int]) -> list[int]:
    """Abort the given FUSE connections; returns those that existed."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    script = ("mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || "
              "mountpoint -q /sys/fs/fuse/connections || exit 1\n" +
              "".join(f"[ -d /sys/fs/fuse/connections/{i} ] && echo 1 > "
                      f"/sys/fs/fuse/connections/{i}/abort && echo {i}\n" for i in wanted))
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], capture_output=True, text=True, timeout=30)
    return [int(x) for x in result.stdout.split() if x.isdigit()]
