"""A real DHCP client (isc dhclient) in a client node, with private lease and resolv files.

Why isc dhclient: it is what a Debian/Ubuntu device of the seed's era runs; it sends its host
name so dnsmasq registers it under the VLAN's domain, and keeps its lease in a file the lab reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from lab.services.proc import spawn

if TYPE_CHECKING:
    from lab.node import Node

SCRIPT = Path(__file__).with_name("dhclient-script.sh")
CONF = "/var/lib/dhcp/dhclient.conf"
LEASES = "/var/lib/dhcp/dhclient.leases"
PIDFILE = "/run/dhclient.pid"
LOG = "/var/log/dhclient.log"


def dhclient_conf(hostname: str) -> str:
    """The client's dhclient.conf (pure)."""
    return (f'send host-name "{hostname}";\n'
            "request subnet-mask, broadcast-address, time-offset, routers, domain-name,\n"
            "        domain-name-servers, domain-search, host-name;\n")


def start(node: Node, iface: str) -> int:
    """Run dhclient in the foreground under the node (killed with it); returns its host PID."""
    proc = spawn(node, ["dhclient", "-4", "-d", "-v", "-cf", CONF, "-lf", LEASES, "-pf",
                        PIDFILE, "-sf", str(SCRIPT), iface], LOG)
    return int(proc.pid)


def restart(node: Node, iface: str) -> int:
    """INIT-REBOOT, as a device does after it reconnects: dhclient stops without releasing and
    starts again, asking for the address in its lease file (dhclient-script reason REBOOT)."""
    node.execute(f"[ -f {PIDFILE} ] && kill $(cat {PIDFILE})")
    node.wait_until_fails(f"[ -f {PIDFILE} ] && kill -0 $(cat {PIDFILE}) 2>/dev/null",
                          timeout=10)
    return start(node, iface)


def last_lease(leases_text: str) -> dict[str, str]:
    """The newest lease block of a dhclient leases file, as option -> value (pure)."""
    blocks = re.findall(r"lease \{(.*?)\n\}", leases_text, re.S)
    if not blocks:
        return {}
    out: dict[str, str] = {}
    for line in blocks[-1].splitlines():
        line = line.strip().rstrip(";")
        if line.startswith("option "):
            key, _, value = line[len("option "):].partition(" ")
            out[key] = value.strip('"')
        elif line:
            key, _, value = line.partition(" ")
            out[key] = value.strip('"')
    return out
