"""rtbr1's own resolver: the lab's "Internet" DNS, a dnsmasq instance that forwards nothing.

Why: the seed's dnsmasq forwards to the router (`server=192.168.1.1`, `server=fe80::…`). In the
lab the router must answer the names the design needs from the Internet (example.com, the
registrar, thesteins.org) and nothing else — no query may leave the lab — and it logs every query
it receives so a scenario can prove what the seed keeps local never reached it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lab.services.proc import spawn

if TYPE_CHECKING:
    from lab.node import Node

LOG = "/var/log/resolver.log"
PIDFILE = "/run/resolver-dnsmasq.pid"


def resolver_argv(records: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The dnsmasq command line (pure): `records` maps a name to its addresses."""
    argv = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--user=root", f"--pid-file={PIDFILE}", "--log-queries=extra",
        f"--log-facility={LOG}", "--local=/#/",  # unknown names: NXDOMAIN here, never forwarded
    ]
    argv += [f"--host-record={name},{','.join(addrs)}" for name, addrs in records.items()]
    return argv


def start(node: Node, records: Mapping[str, tuple[str, ...]]) -> int:
    """Start the resolver inside `node` (rtbr1); returns its host PID."""
    proc = spawn(node, resolver_argv(records), "/var/log/resolver.out")
    node.wait_for_open_port(53, "udp", timeout=10)
    return int(proc.pid)
