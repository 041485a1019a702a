"""Start a long-running daemon inside a node with its output in the node's own log file.

Why: a daemon that inherits the caller's stdout keeps the caller's pipe open forever (a
`lab up | tail` never ends); every service the stack starts writes to a file under the node's
/var/log instead, in its own session, in the node's cgroup (frozen and killed with the node).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.node import Node


def spawn(node: Node, argv: Sequence[str], log: str) -> subprocess.Popen[bytes]:
    """Run `argv` in `node`; stdout and stderr append to the node's `log` (a /var/log path)."""
    with open(node.path(log), "ab") as out:
        proc: subprocess.Popen[bytes] = node.popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    return proc


# How each daemon of the seed's stack shows in a node's process list (its command line): the
# processes a `kill_service` fault may end. heartbeat renames itself ("heartbeat: master control
# process"); the replicator is the lab's own Python module.
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    "dnsmasq": ("/usr/sbin/dnsmasq",),
    "heartbeat": ("heartbeat: master control process",),
    "replicator": ("-m lab.replicator.daemon",),
    "ddclient": ("ddclient",),
}


def service_pids(node: Node, service: str) -> list[int]:
    """Host PIDs of `service`'s main processes in `node`, found among the node's own cgroup
    (never machine-wide): what a fault that kills that daemon alone ends."""
    try:
        needles = SERVICE_COMMANDS[service]
    except KeyError:
        raise ValueError(f"unknown service {service!r} (known: "
                         f"{', '.join(SERVICE_COMMANDS)})") from None
    return [pid for pid, cmd in node.processes()
            if any(n in cmd for n in needles) and not cmd.startswith(("sh -c", "nsenter"))]
