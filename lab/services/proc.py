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
