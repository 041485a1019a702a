"""What the design's own configuration says a failover may cost, in seconds.

A bound such as "takeover ≤ N s" is only honest if N comes from the configuration under test
and from costs measured on this kind of machine, not from a number that happened to pass. A
takeover here is: heartbeat declares the peer dead after ``deadtime``; ``drbddisk`` can promote
only once DRBD too has seen the peer go (after its ``ping-int`` when that is longer); then the
resource group starts in order, and the package's ``IPv6addr`` agent blocks ~5-7 s per IPv6 VIP
(DAD, then unsolicited neighbour advertisements 1 s apart) before ``dnsmasq`` starts. The
constants below are the measured costs (README, "Measured"; DESIGN.md); the margin covers the
spread seen on this 2-core machine with two labs running side by side.
"""

from __future__ import annotations

from typing import Any

STOCK_IPV6ADDR_S = 7.5  # per IPv6 VIP: DAD + 5 unsolicited NAs 1 s apart (measured 5-7 s)
RESOURCE_CHAIN_S = 1.0  # drbddisk + Filesystem + 2 x IPaddr + dnsmasq start (measured ~0.5 s)
DRBD_DEFAULT_PING_INT_S = 10.0
MARGIN_S = 4.0
# A (re)started heartbeat negotiates for ~10 s before it takes its resources (its hard-coded
# start-up delay; measured 11 s from "Local status now set to: 'up'" to the acquisition).
HEARTBEAT_STARTUP_S = 10.0


def detection_s(lab: Any) -> float:
    """When the survivor can act: heartbeat's deadtime, or DRBD's ping-int if that is later
    (drbddisk retries for ~6 s, finding F12)."""
    return profile_detection_s(lab.stack.profile)


def takeover_budget_s(lab: Any) -> float:
    """Upper bound for a hard failover's takeover in this lab's profile (see module doc)."""
    return profile_takeover_budget_s(lab.stack.profile, ipv6_vip_count(lab.topology),
                                     ipv6addr_agent(lab))


def settle_quiet_s(lab: Any) -> float:
    """How long the pair's state must stay unchanged before it counts as settled after a fault:
    long enough for a heartbeat that restarts itself (it does after a partition) to detect its
    peer, finish its start-up negotiation and run a whole takeover."""
    return detection_s(lab) + HEARTBEAT_STARTUP_S + takeover_budget_s(lab)


def failback_budget_s(lab: Any) -> float:
    """Upper bound for the outage of an orderly hand-back (auto_failback): the old holder
    releases, the preferred node starts the whole group, IPv6addr included."""
    return handover_budget_s(ipv6_vip_count(lab.topology), ipv6addr_agent(lab))


def ipv6addr_agent(lab: Any) -> str:
    """The lab's IPv6addr agent: its own choice, else its profile's."""
    return str(getattr(lab.stack, "ipv6addr", None) or lab.stack.profile.ipv6addr)


def ipv6addr_cost_s(agent: str) -> float:
    """How long one IPv6 VIP holds the resource chain: the package's agent waits out DAD and
    its advertisements; the non-blocking one returns at once."""
    return STOCK_IPV6ADDR_S if agent == "stock" else 0.0


# -- the same budgets from a profile and a topology, without a lab (SLA files, reports) ----
def ipv6_vip_count(topology: Any) -> int:
    return sum(1 for v in topology.vips if v.address.version == 6)


def profile_detection_s(profile: Any) -> float:
    """:func:`detection_s` for a :class:`lab.services.profiles.Profile`."""
    deadtime = profile.deadtime_ms / 1000
    ping_int = float(profile.ping_int_s or DRBD_DEFAULT_PING_INT_S)
    return float(max(deadtime, min(ping_int, deadtime + 6.0)))


def profile_takeover_budget_s(profile: Any, ipv6_vips: int, agent: str | None = None) -> float:
    """:func:`takeover_budget_s` for a profile, a number of IPv6 VIPs and their agent
    (default: the profile's)."""
    cost = ipv6addr_cost_s(agent or profile.ipv6addr)
    return profile_detection_s(profile) + ipv6_vips * cost + RESOURCE_CHAIN_S + MARGIN_S


def handover_budget_s(ipv6_vips: int, agent: str = "stock") -> float:
    """:func:`failback_budget_s` for a number of IPv6 VIPs and their agent: an orderly
    handover waits for no timer, so no other part of a profile enters it."""
    return ipv6_vips * ipv6addr_cost_s(agent) + 2 * RESOURCE_CHAIN_S + MARGIN_S
