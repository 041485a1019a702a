"""The seed's firewall against the rest of its configuration: does each daemon get its traffic?

Why: a firewall rule is written once, next to one daemon's instructions, and checked by nobody
against the others. This reads who must reach whom from the files themselves — heartbeat's peers
and port from ha.cf, DRBD's addresses and ports from drbd0.res, dnsmasq's DNS, DHCP and DHCPv6
from dnsmasq.conf — and asks the node's rules (as the lab loads them, ufw's policy: incoming
denied unless allowed) whether that traffic gets in, and whether a rule opens a port nothing uses.
Pure: rules and texts in, `(file, line, level, message)` out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab.replicator import resfile
from lab.services.firewall import UFW_SOURCE, UfwRule, context, serves_dhcpv6


@dataclass(frozen=True)
class Need:
    """Traffic a daemon of the set must receive on `node`; `src` None: from anyone."""

    daemon: str
    port: int
    proto: str
    src: str | None
    family: int
    file: str  # where the configuration asks for it
    line: int


def _line_of(text: str, needle: str) -> int:
    return next((no for no, ln in enumerate(text.splitlines(), 1) if needle in ln), 1)


def needs(texts: Mapping[str, str], node: str) -> list[Need]:
    """What `node` must let in for the set's daemons (heartbeat, DRBD, dnsmasq)."""
    ctx = context(texts, node)
    hacf = texts.get("ha.cf", "")
    out = [Need("heartbeat", ctx.heartbeat_port, "udp", p, 4 if ":" not in p else 6, "ha.cf",
                _line_of(hacf, p)) for p in ctx.peers]
    res_text = texts.get("drbd0.res", "")
    try:
        resources = resfile.parse(res_text, "drbd0.res")
    except resfile.ResFileError:
        resources = {}
    for res in resources.values():
        me = res.hosts.get(node)
        for peer in res.hosts.values():
            if me is not None and peer.name != node and is_ip(peer.address):
                out.append(Need(f"DRBD {res.name}", me.port, "tcp", peer.address,
                                ipaddress.ip_address(peer.address).version, "drbd0.res",
                                _line_of(res_text, f"{me.address}:{me.port}")))
    conf = texts.get("dnsmasq.conf", "")
    if conf:
        for proto in ("udp", "tcp"):
            for family in (4, 6):
                out.append(Need("dnsmasq DNS", 53, proto, None, family, "dnsmasq.conf", 1))
        v4 = [no for no, ln in enumerate(conf.splitlines(), 1)
              if _range(ln) and not _v6_range(ln)]
        if v4:
            out.append(Need("dnsmasq DHCP", 67, "udp", None, 4, "dnsmasq.conf", v4[0]))
        if serves_dhcpv6(conf):
            line = next(no for no, ln in enumerate(conf.splitlines(), 1) if _v6_range(ln))
            out.append(Need("dnsmasq DHCPv6", 547, "udp", "fe80::1", 6, "dnsmasq.conf", line))
    return out


def _range(line: str) -> bool:
    """A `dhcp-range=` line, as dnsmasq reads it (leading blanks skipped)."""
    return line.strip().startswith("dhcp-range=")


def _v6_range(line: str) -> bool:
    return _range(line) and serves_dhcpv6(line)


def is_ip(text: str) -> bool:
    """Whether `text` is one IPv4 or IPv6 address (not a name, not a network)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


Problem = tuple[str, int, str, str]  # (source file, line, level, message)


def check(texts: Mapping[str, str], node: str, rules: Sequence[UfwRule]) -> list[Problem]:
    """Traffic the set needs that `node`'s rules drop, and allowed ports nothing uses."""
    out: list[Problem] = []
    wanted = needs(texts, node)
    for n in wanted:
        if any(r.allows(n.port, n.proto, n.src, n.family) for r in rules):
            continue
        who = f"from {n.src}" if n.src and n.daemon != "dnsmasq DHCPv6" else "from clients"
        rule = next((r for r in rules if n.port in r.ports() and r.proto in (None, n.proto)
                     and r.line), None)
        where = (UFW_SOURCE, rule.line) if rule else (n.file, n.line)
        out.append((*where, "error", f"{node}'s firewall drops {n.daemon}'s {n.port}/{n.proto} "
                    f"(IPv{n.family}) {who}: ufw's default policy denies incoming traffic no "
                    "`ufw allow` line lets in"))
    used = {(n.port, n.proto) for n in wanted}
    for r in rules:
        if r.action != "allow" or not r.line:
            continue
        for proto in ([r.proto] if r.proto else ["tcp", "udp"]):
            unused = sorted(p for p in r.ports() if (p, proto) not in used)
            if unused:
                ports = ", ".join(f"{p}/{proto}" for p in unused)
                out.append((UFW_SOURCE, r.line, "warning", f"on {node} `{r.text}` opens "
                            f"{ports}, which no daemon of this configuration uses (drbd0.res, "
                            f"ha.cf, dnsmasq.conf: {_used_text(used)}) (F21)"))
    return out


def _used_text(used: set[tuple[int, str]]) -> str:
    return ", ".join(f"{p}/{proto}" for p, proto in sorted(used))
