"""A tiny syslog listener for a node's private /dev/log (run inside the node).

Why: a node has a private /dev without /dev/log, so ddclient's and dnsmasq's syslog lines would
be lost. This binds /dev/log as a datagram socket and appends every message, prefixed with the
wall-clock time, to a file (default /var/log/syslog) the lab and the timeline read.

    python -m lab.services.syslogd [/dev/log] [/var/log/syslog]
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time

_PRI = re.compile(rb"^<\d{1,3}>")


def serve(sock_path: str, log_path: str) -> None:
    """Receive datagrams forever; one line per message, flushed at once."""
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    os.chmod(sock_path, 0o666)
    with open(log_path, "ab", buffering=0) as log:
        while True:
            data = sock.recv(65536)
            msg = _PRI.sub(b"", data).rstrip(b"\n\0")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
            frac = f"{time.time() % 1:.6f}"[1:]
            log.write(f"{stamp}{frac} ".encode() + msg + b"\n")


def main(argv: list[str]) -> int:
    sock_path = argv[1] if len(argv) > 1 else "/dev/log"
    log_path = argv[2] if len(argv) > 2 else "/var/log/syslog"
    serve(sock_path, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
