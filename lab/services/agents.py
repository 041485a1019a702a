"""Heartbeat resource wrappers the lab writes into a node's /etc/ha.d/resource.d.

One because of a finding (F14): heartbeat's `IPv6addr` wrapper answers `status` with the OCF
agent's `monitor`, which pings the address and takes *any* ICMPv6 packet arriving within ~30 ms
as the reply. ResourceManager asks `status` before every `start` (`we_own_resource || start`),
so on a link with ICMPv6 traffic it can decide the VIP is already up and never configure it,
while heartbeat reports every resource acquired. The lab's wrapper is the package's in every
respect but one: `status` asks the agent's own `status` action (is the address configured on
this node?).

Two for speed, chosen by a profile (`agents.ipv6addr`, `agents.ipaddr`) or a stack option and
never by the seed's: an IPv6addr that does not wait out DAD and its advertisements, and a lean
IPaddr that does the package's work without its layers of shell. Each comes with its row for
`lab changes`. Pure text, so they are rendered and unit-tested like the rest.
"""

from __future__ import annotations

from lab.services.changes import Change

IPV6ADDR_WRAPPER_PATH = "/etc/ha.d/resource.d/IPv6addr"
OCF_IPV6ADDR = "/usr/lib/ocf/resource.d/heartbeat/IPv6addr"

# Written for the lab (not a copy of the package's file): the same argument split as heartbeat's
# haresources syntax `IPv6addr::ADDR[/PREFIX[/NIC]]`, the same OCF environment, and heartbeat's own
# hto-mapfuncs for every action but `status`.
_WRAPPER = """\
#!/bin/sh
# hapair-lab: heartbeat's IPv6addr wrapper, with `status` answered by the agent's `status`
# (is the address configured here?) instead of its `monitor` (does anything answer a ping?).
# Why: finding F14 (README). `lab up --keep-finding F14` keeps the package's wrapper.
. /etc/ha.d/resource.d//hto-mapfuncs

if [ $# != 2 ]; then
    echo "usage: $0 <ip-address> $LEGAL_ACTIONS"
    exit 1
fi

OCF_TYPE=IPv6addr
OCF_RESOURCE_INSTANCE=${OCF_TYPE}_$1
export OCF_TYPE OCF_RESOURCE_INSTANCE

# ADDR[/PREFIX[/NIC]]
OCF_RESKEY_ipv6addr=${1%%/*}
export OCF_RESKEY_ipv6addr
rest=${1#"$OCF_RESKEY_ipv6addr"}
rest=${rest#/}
if [ -n "$rest" ]; then
    OCF_RESKEY_cidr_netmask=${rest%%/*}
    export OCF_RESKEY_cidr_netmask
    nic=${rest#"$OCF_RESKEY_cidr_netmask"}
    nic=${nic#/}
    if [ -n "$nic" ]; then
        OCF_RESKEY_nic=$nic
        export OCF_RESKEY_nic
    fi
fi

if [ "$2" = status ]; then
    @OCF_IPV6ADDR@ status
    rc=$?
    case $rc in
        0) log_and_print "INFO: $OCF_TYPE Running OK";;
        7) log_and_print "INFO: $OCF_TYPE Resource is stopped";;
        *) log_and_print "ERROR: $OCF_TYPE status failed: $rc";;
    esac
    exit $rc
fi

ra_execocf $2
"""


def render_ipv6addr_wrapper(keep: frozenset[str]) -> tuple[str, list[Change]] | None:
    """The wrapper text and its change row, or None when F14 is kept (the package's wrapper,
    copied from the host with the rest of /etc/ha.d, stays in place)."""
    if "F14" in keep:
        return None
    change = Change(
        IPV6ADDR_WRAPPER_PATH, "status",
        "status → the OCF agent's monitor: ping the VIP, any ICMPv6 packet counts as the reply",
        "status → the OCF agent's status: is the VIP configured on this node",
        "ResourceManager skips `start` when `status` says running: with ICMPv6 traffic on the "
        "link the IPv6 VIP was configured nowhere after a takeover (F14)",
        "F14")
    return _WRAPPER.replace("@OCF_IPV6ADDR@", OCF_IPV6ADDR), [change]


# The start of both speed variants below: heartbeat's logging functions, and haresources'
# `ADDR/REST` split as the package's wrappers split it (each variant parses REST its own way).
_ARGUMENTS = """\
. /etc/ha.d/resource.d//hto-mapfuncs

if [ $# != 2 ]; then
    echo "usage: $0 <ip-address> start|stop|status|monitor"
    exit 1
fi
addr=${1%%/*}
rest=${1#"$addr"}; rest=${rest#/}
"""
# ... and their end: status as ResourceManager reads it (the word `running` or `stopped`),
# from each variant's own `configured` test.
_STATUS_AND_END = """\
    status|monitor)
        if configured; then echo running; exit 0; fi
        echo stopped; exit 3;;
esac
exit 1
"""


def _fill(template: str) -> str:
    """A speed variant's text with the start and the end both share."""
    return (template.replace("@ARGUMENTS@\n", _ARGUMENTS)
            .replace("@STATUS_AND_END@", _STATUS_AND_END))


# A comparison for scenarios, never the seed's default: the package's IPv6addr waits out
# duplicate address detection and then sends 5 unsolicited neighbour advertisements 1 s apart
# before it returns, so each IPv6 VIP holds the resource chain (and dnsmasq after it) for ~5-7 s.
# This wrapper configures the address without DAD and sends the same advertisements from
# send_ua in the background. What it gives up: DAD would have noticed the address already in
# use by the other node (a split brain); with this variant both nodes configure it.
_NONBLOCKING = """\
#!/bin/sh
# hapair-lab: an IPv6addr that does not block the resource chain (see `lab changes`):
# the address is added without duplicate address detection and the unsolicited neighbour
# advertisements are sent in the background.
@ARGUMENTS@
prefix=${rest%%/*}; [ -n "$prefix" ] || prefix=64
nic=${rest#"$prefix"}; nic=${nic#/}
[ -n "$nic" ] || { log_and_print "ERROR: IPv6addr: no interface in $1"; exit 1; }

# ip parses the address, so haresources' zero-padded spelling (…:c0a8:0104) matches the
# kernel's compressed one (…:c0a8:104); a text match on `ip addr` output would not
configured() { [ -n "$(ip -6 -o addr show dev "$nic" to "$addr/128" 2>/dev/null)" ]; }

case $2 in
    start)
        configured && exit 0
        ip -6 addr replace "$addr/$prefix" dev "$nic" nodad || exit 1
        setsid @SEND_UA@ -i 1000 -c 5 "$addr" "$prefix" "$nic" </dev/null >/dev/null 2>&1 &
        log_and_print "INFO: IPv6addr (non-blocking) $addr/$prefix on $nic: advertising"
        exit 0;;
    stop)
        configured && ip -6 addr del "$addr/$prefix" dev "$nic"
        exit 0;;
@STATUS_AND_END@"""
SEND_UA = "/usr/libexec/heartbeat/send_ua"


def render_ipv6addr_nonblocking() -> tuple[str, list[Change]]:
    """The non-blocking IPv6addr wrapper and its change row (a comparison, not a fix)."""
    change = Change(
        IPV6ADDR_WRAPPER_PATH, "start",
        "start → the OCF agent: wait out DAD, then 5 unsolicited NAs 1 s apart (blocks ~5-7 s "
        "per address)",
        "start → `ip -6 addr add … nodad`, the same 5 NAs from send_ua in the background",
        "profile fast (or stack option ipv6addr=nonblocking): the package's agent holds every "
        "takeover and cold start ~7 s per IPv6 VIP (F19); gives up DAD, so a split brain "
        "configures the address on both nodes")
    return _fill(_NONBLOCKING).replace("@SEND_UA@", SEND_UA), [change]


IPADDR_WRAPPER_PATH = "/etc/ha.d/resource.d/IPaddr"
SEND_ARP = "/usr/libexec/heartbeat/send_arp"
# the package's defaults (OCF IPaddr: ARP_INTERVAL_MS 500, ARP_REPEAT 10, ARP_NETMASK), kept
SEND_ARP_INTERVAL_MS = 500
SEND_ARP_REPEAT = 10

# A lighter IPaddr for quick scenarios, never the seed's default. The package's agent is a wrapper
# that sources heartbeat's and OCF's shell libraries, then runs the OCF agent, which sources them
# again, asks findif and ifconfig and hard-links lock files to pick an alias; ResourceManager
# calls it twice per VIP (status, then start). Measured in an idle lab on this machine: status
# 27-45 ms and start 64-90 ms, ~0.1 s per VIP on every takeover and cold start, more under load;
# this one 6-8 ms and 12-14 ms. It does the same to the node -- the address on the first free
# alias label NIC:N with its broadcast, then 10 gratuitous ARPs 500 ms apart from the package's
# send_arp in the background, its PID where the package keeps it -- from one shell and `ip`.
_LEAN_IPADDR = """\
#!/bin/sh
# hapair-lab: a lean IPaddr (see `lab changes`): the package's address, alias label, broadcast
# and gratuitous ARPs for ADDR/PREFIX/NIC[/BROADCAST], from one shell and `ip`.
@ARGUMENTS@
prefix=${rest%%/*}
rest=${rest#"$prefix"}; rest=${rest#/}
nic=${rest%%/*}
bcast=${rest#"$nic"}; bcast=${bcast#/}
case $prefix in
    ''|*[!0-9]*)
        log_and_print "ERROR: IPaddr (lean): $1: expected ADDR/PREFIX/NIC, the prefix a length"
        exit 1;;
esac
[ -n "$nic" ] || { log_and_print "ERROR: IPaddr (lean): $1: expected ADDR/PREFIX/NIC"; exit 1; }
pidfile=/run/resource-agents/send_arp-$addr

configured() { [ -n "$(ip -4 -o addr show dev "$nic" to "$addr/32" 2>/dev/null)" ]; }

case $2 in
    start)
        configured && exit 0
        n=0
        while [ -n "$(ip -4 -o addr show dev "$nic" label "$nic:$n" 2>/dev/null)" ]; do
            n=$((n + 1))
        done
        ip -4 addr add "$addr/$prefix" brd "${bcast:-+}" dev "$nic" label "$nic:$n" || exit 1
        mkdir -p "${pidfile%/*}"
        setsid @SEND_ARP@ -i @INTERVAL@ -r @REPEAT@ -p "$pidfile" "$nic" "$addr" auto "$addr" \\
            ffffffffffff </dev/null >/dev/null 2>&1 &
        log_and_print "INFO: IPaddr (lean) $addr/$prefix on $nic:$n: gratuitous ARPs"
        exit 0;;
    stop)
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null
            rm -f "$pidfile"
        fi
        if configured; then
            ip -4 addr del "$addr/$prefix" dev "$nic" || exit 1
        fi
        exit 0;;
@STATUS_AND_END@"""


def render_ipaddr_lean() -> tuple[str, list[Change]]:
    """The lean IPaddr wrapper and its change row (a choice for speed, not a fix)."""
    change = Change(
        IPADDR_WRAPPER_PATH, "start, status",
        "the OCF agent: shell libraries sourced twice, findif, ifconfig alias, lock files "
        "(status + start ~0.1 s per VIP idle)",
        "ip -4 addr add … label NIC:N from one shell, the same 10 gratuitous ARPs from send_arp "
        "in the background; status: is the address on the NIC",
        "profile fast (or stack option ipaddr=lean): the package's agent spends ~0.2 s of every "
        "takeover and cold start (more under load) starting shells for the two IPv4 VIPs; does "
        "not check whether the address sits on another interface (the package's status calls "
        "that an error)")
    text = (_fill(_LEAN_IPADDR).replace("@SEND_ARP@", SEND_ARP)
            .replace("@INTERVAL@", str(SEND_ARP_INTERVAL_MS))
            .replace("@REPEAT@", str(SEND_ARP_REPEAT)))
    return text, [change]
