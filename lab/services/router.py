"""rtbr1 as the edge router: NAT to the lab's "Internet", inside rtbr1's namespace only.

Why port ranges: behind a NAT the registrar sees one public address for both servers, yet a
scenario must know which node sent an update. Each HA server's connections leave from its
own source-port range of the public address (a router is free to choose ports); everything else
is plain masquerade. The registrar maps the port back to the node (`attribution`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.node import Node

TABLE = "hapair_nat"


def nat_ruleset(wan_iface: str, public_ip: str, ranges: Mapping[str, tuple[str, int, int]]
                ) -> str:
    """The nftables ruleset (pure). `ranges`: node -> (inside IPv4, low port, high port)."""
    rules = [
        f"        oifname \"{wan_iface}\" ip saddr {addr} meta l4proto {{ tcp, udp }} "
        f"snat to {public_ip}:{low}-{high}"
        for addr, low, high in ranges.values()
    ]
    return "\n".join([
        f"table ip {TABLE} {{",
        "    chain postrouting {",
        "        type nat hook postrouting priority srcnat; policy accept;",
        *rules,
        f"        oifname \"{wan_iface}\" masquerade",
        "    }",
        "}",
        "",
    ])


def attribution(ranges: Mapping[str, tuple[str, int, int]]) -> dict[str, list[int]]:
    """The registrar's port → node map for the same ranges."""
    return {node: [low, high] for node, (_addr, low, high) in ranges.items()}


def apply(node: Node, ruleset: str) -> None:
    """Load the ruleset into rtbr1's own netns (replacing a previous copy of our table)."""
    node.execute(f"nft delete table ip {TABLE} 2>/dev/null")
    rc, out = node.execute("nft -f -", input=ruleset)
    if rc != 0:
        raise RuntimeError(f"{node.name}: nft refused the NAT ruleset: {out.strip()}")
