"""Acting inside a node's network namespace from the lab's own process, without starting one.

Why: a socket belongs to the network namespace it was made in, and /proc/sys/net shows the
namespace of the thread that opens it. So the calling thread enters the namespace with
setns(2) just long enough to make a socket or open a sysctl, then returns to its own: that costs
microseconds where a process in the node costs milliseconds, and it works the same for every
node backend (a container's own /proc/sys may be read-only; the host's is not).
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """Run the body with this thread in the network namespace at `netns_path` (a
    /proc/PID/ns/net path); the thread is back in its own namespace afterwards, whatever
    happened. Keep the body short: only this thread moves, and only sockets and files opened
    inside stay bound to the namespace."""
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)


def socket_in(netns_path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket of the network namespace at `netns_path` (close-on-exec)."""
    with entered(netns_path):
        return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)


def write_sysctl(netns_path: str, key: str, value: str) -> None:
    """Set a network sysctl of the namespace at `netns_path`. `key` is the path below
    /proc/sys (`net/ipv6/conf/eth0/optimistic_dad`): the dotted form cannot name an interface
    with a dot in its name (enp2s1.3)."""
    with entered(netns_path), open(os.path.join("/proc/sys", key), "w") as out:
        out.write(value)
