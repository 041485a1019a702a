"""Who plays which part in the HA pair, read from the servers' kernels.

Scenarios aim faults by role, not by name ("crash the active server"), so that the same story
runs whichever node the design prefers and, later, against other designs (Pacemaker, keepalived)
whose topologies also give their servers the role ``server`` and their floating addresses as
VIPs. The *active* server is the one whose kernel holds every VIP, because that is what answers
clients (ARP for the VIP, DNS on it); the *standby* is the other server. Nothing here asks the
cluster manager for its opinion: a frozen node still "holds" what its kernel holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.probes import labview

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node


class RoleError(AssertionError):
    """The pair is not in a state where the asked-for role has exactly one player."""


def holders(lab: Lab, vip: str | None = None) -> set[str]:
    """Servers whose kernel has ``vip`` configured now (default: the first VIP)."""
    held = labview.vip_holders(lab)
    if vip is None:
        vip = next(iter(held), None)
        if vip is None:
            raise RoleError(f"lab {lab.name}: the topology names no VIP")
    key = _vip_key(held, vip)
    return set(held[key])


def active(lab: Lab) -> Node:
    """The one server holding every VIP; RoleError (with who holds what) otherwise."""
    held = labview.vip_holders(lab)
    owners = {names for names in held.values()}
    if len(owners) == 1:
        (names,) = owners
        if len(names) == 1:
            return lab[names[0]]
    raise RoleError(f"lab {lab.name}: no single active server: " + describe(held))


def standby(lab: Lab) -> Node:
    """The server that is not active (the pair has exactly two servers)."""
    me = active(lab).name
    others = [s.name for s in lab.topology.nodes_with_role("server") if s.name != me]
    if len(others) != 1:
        raise RoleError(f"lab {lab.name}: {len(others)} servers besides the active {me}: "
                        f"{', '.join(others) or 'none'}")
    return lab[others[0]]


def servers(lab: Lab) -> list[Node]:
    return [lab[s.name] for s in lab.topology.nodes_with_role("server")]


def describe(held: dict[str, tuple[str, ...]]) -> str:
    return "; ".join(f"{vip} held by {', '.join(names) or 'nobody'}"
                     for vip, names in held.items())


def _vip_key(held: dict[str, tuple[str, ...]], vip: str) -> str:
    import ipaddress
    wanted = ipaddress.ip_address(vip)
    for key in held:
        if ipaddress.ip_address(key) == wanted:
            return key
    raise RoleError(f"{vip} is not one of the topology's VIPs ({', '.join(held)})")
