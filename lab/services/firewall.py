"""The seed's host firewall: its `ufw allow` lines, as printed, as each server's nftables.

Why nftables and not ufw: a node has no ufw service and no iptables state of its own, but it has
its own network namespace, where `nft` runs (as for the router's NAT). The renderer is pure: the
seed's lines plus ufw's stock policy (before.rules / before6.rules of ufw 0.36: incoming denied
unless allowed, outgoing allowed, established/related allowed, invalid dropped, the ICMP and
ICMPv6 types it lets in, neighbour discovery, MLD, the DHCP and DHCPv6 client rules, mDNS/SSDP)
become one `inet` table, so IPv4 and IPv6 get the same user rules, as ufw gives a rule without an
address family to both. Every rule carries a counter; `lab fw NODE` shows them.

Two of the seed's rules are repaired, visibly (a `Change`, keepable like every workaround):
a rule whose source is the node's own address (the heartbeat line typed on both hosts, F20)
allows the peer instead, and DHCPv6 is let in when dnsmasq serves it (F22).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lab.services.changes import Change

if TYPE_CHECKING:
    from rich.table import Table

    from lab.node import Node

TABLE = "ufw"
RULESET_PATH = "/var/lib/misc/hapair-ufw.nft"  # a node's private, persistent directory
UFW_SOURCE = "ufw"  # the fixture file holding the seed's `ufw` lines
ACTIONS = {"allow": "accept", "deny": "drop", "reject": "reject"}
PROTOS = ("tcp", "udp")

_PROMPT_RE = re.compile(
    r"^(?:(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)?\$\s*)?(?:sudo\s+)?(?=ufw(?:\s|$))")
_PORT_RE = re.compile(r"^\d{1,5}(?::\d{1,5})?(?:,\d{1,5}(?::\d{1,5})?)*$")


class UfwError(ValueError):
    """A `ufw` line the lab cannot render; reads `file:line: problem`."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem = file, line, problem


@dataclass(frozen=True)
class UfwRule:
    """One `ufw allow|deny|reject` command. `hosts` empty: typed on every host."""

    line: int
    text: str  # the command as printed, without the prompt (`ufw allow from ...`)
    hosts: tuple[str, ...]
    action: str
    direction: str  # "in" | "out"
    src: str | None  # None: any
    dst: str | None
    port: str | None  # destination port(s), ufw syntax: 53, 7788:7789, 53,67
    sport: str | None
    proto: str | None  # None: tcp and udp when a port is given, else any
    iface: str | None = None

    @property
    def family(self) -> int | None:
        """4 or 6 when an address pins it; None: ufw applies the rule to IPv4 and IPv6."""
        for a in (self.src, self.dst):
            if a is not None:
                return ipaddress.ip_network(a, strict=False).version
        return None

    def ports(self) -> set[int]:
        """Every destination port the rule names (ranges expanded)."""
        return _expand(self.port)

    def allows(self, port: int, proto: str, src: str | None = None, family: int = 4) -> bool:
        """Does this `allow` rule let a packet in to `port`/`proto` from `src`?"""
        if self.action != "allow" or self.direction != "in":
            return False
        if self.family not in (None, family):
            return False
        if self.proto not in (None, proto) or (self.port is not None and port not in self.ports()):
            return False
        if self.src is None:
            return True
        return src is not None and ipaddress.ip_address(src) in ipaddress.ip_network(
            self.src, strict=False)


def _expand(spec: str | None) -> set[int]:
    out: set[int] = set()
    for part in (spec or "").split(","):
        if not part:
            continue
        low, _, high = part.partition(":")
        out.update(range(int(low), int(high or low) + 1))
    return out


# -- the seed's lines -----------------------------------------------------------------------------
def parse_ufw(text: str, file: str = UFW_SOURCE) -> tuple[UfwRule, ...]:
    """Every `ufw` command of a file of shell lines (`[HOST]$ [sudo] ufw ...`); `#` comments and
    blank lines skipped; anything else is an error at its line."""
    out: list[UfwRule] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROMPT_RE.match(line)
        if m is None:
            raise UfwError(file, no, "not a `[HOST]$ [sudo] ufw ...` command line")
        host = m.group("host")
        out.append(parse_command(line[m.end():], no, file, (host,) if host else ()))
    return tuple(out)


def parse_command(command: str, line: int, file: str = UFW_SOURCE,
                  hosts: tuple[str, ...] = ()) -> UfwRule:
    """One `ufw allow|deny|reject [in|out] [on IFACE] ...` in ufw's full or simple syntax."""
    words = command.split()
    if len(words) < 3 or words[0] != "ufw":
        raise UfwError(file, line, f"{command!r}: expected `ufw allow|deny|reject ...`")
    action = words[1]
    if action not in ACTIONS:
        raise UfwError(file, line, f"ufw {action}: the lab renders allow, deny and reject only")
    rest = words[2:]
    direction = "in"
    if rest and rest[0] in ("in", "out"):
        direction, rest = rest[0], rest[1:]
    iface = None
    if len(rest) >= 2 and rest[0] == "on":
        iface, rest = rest[1], rest[2:]
    text = " ".join(words)
    if len(rest) == 1 and rest[0] not in ("from", "to", "proto"):  # simple syntax: PORT[/PROTO]
        port, _, proto = rest[0].partition("/")
        _check_port(port, file, line)
        if proto and proto not in PROTOS:
            raise UfwError(file, line, f"{rest[0]}: protocol {proto!r} (tcp or udp)")
        return UfwRule(line, text, hosts, action, direction, None, None, port, None,
                       proto or None, iface)
    fields: dict[str, str | None] = {"from": None, "to": None, "port": None, "sport": None,
                                     "proto": None}
    last_addr = ""
    i = 0
    while i < len(rest):
        word = rest[i]
        if i + 1 >= len(rest):
            raise UfwError(file, line, f"{text}: {word!r} needs a value")
        value = rest[i + 1]
        if word in ("from", "to"):
            fields[word] = None if value == "any" else _address(value, file, line)
            last_addr = word
        elif word == "port":
            if not last_addr:
                raise UfwError(file, line, f"{text}: `port` must follow `from` or `to`")
            _check_port(value, file, line)
            fields["port" if last_addr == "to" else "sport"] = value
        elif word == "proto":
            if value not in PROTOS:
                raise UfwError(file, line, f"{text}: protocol {value!r} (tcp or udp)")
            fields["proto"] = value
        else:
            raise UfwError(file, line, f"{text}: unexpected {word!r}")
        i += 2
    src, dst = fields["from"], fields["to"]
    if src and dst and ipaddress.ip_network(src, strict=False).version != \
            ipaddress.ip_network(dst, strict=False).version:
        raise UfwError(file, line, f"{text}: `from` and `to` are of different address families")
    return UfwRule(line, text, hosts, action, direction, src, dst, fields["port"],
                   fields["sport"], fields["proto"], iface)


def _address(value: str, file: str, line: int) -> str:
    """A network as ufw takes it; a single host stays a plain address (as printed)."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise UfwError(file, line, f"{value!r} is not an address or network") from None
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _check_port(value: str, file: str, line: int) -> None:
    if not _PORT_RE.match(value) or not all(0 < p < 65536 for p in _expand(value)):
        raise UfwError(file, line, f"{value!r} is not a port, a range (A:B) or a list of them")


def rules_on(rules: Iterable[UfwRule], node: str) -> list[UfwRule]:
    """The rules typed on `node`: its own lines and the lines typed on every host."""
    return [r for r in rules if not r.hosts or node in r.hosts]


# -- workarounds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """What the rest of the seed's configuration says about one server (pure data)."""

    node: str
    own: frozenset[str]  # its own addresses (interfaces file, drbd0.res)
    peers: tuple[str, ...]  # the peer's heartbeat addresses (ha.cf ucast lines not its own)
    heartbeat_port: int = 694
    dhcpv6: bool = False  # dnsmasq serves DHCPv6 (an IPv6 dhcp-range)


WHY_F20 = ("typed on both hosts, the line lets in on {node} only {node} itself, whose own "
           "packets arrive on lo anyway: {peers}'s heartbeats are dropped")
WHY_F22 = ("dnsmasq.conf's IPv6 dhcp-range (`ra-stateless`) answers DHCPv6 "
           "information-requests on 547/udp, which no rule lets in")
DHCPV6_RULE = "ufw allow 547/udp"


def lab_rules(rules: Sequence[UfwRule], ctx: Context, keep: frozenset[str]
              ) -> tuple[list[UfwRule], list[Change]]:
    """The node's rules as the lab loads them, and the changes from the seed's."""
    out: list[UfwRule] = []
    changes: list[Change] = []
    for r in rules_on(rules, ctx.node):
        src = r.src or ""
        own = _is_host(src) and src in ctx.own if src else False
        if own and "F20" not in keep and ctx.peers and r.ports() & {ctx.heartbeat_port}:
            fixed = [replace(r, src=p, text=r.text.replace(src, p)) for p in ctx.peers]
            changes.append(Change(RULESET_PATH, f"{ctx.node}: ufw {r.port}/{r.proto or 'any'}",
                                  r.text, "; ".join(f.text for f in fixed),
                                  WHY_F20.format(node=ctx.node, peers=", ".join(ctx.peers)),
                                  "F20"))
            out += fixed
            continue
        out.append(r)
    if ctx.dhcpv6 and "F22" not in keep and not any(
            r.allows(547, "udp", "fe80::1", family=6) for r in out):
        rule = parse_command(DHCPV6_RULE, 0, hosts=(ctx.node,))
        out.append(rule)
        changes.append(Change(RULESET_PATH, "ufw 547/udp", "(no rule: DHCPv6 dropped)",
                              DHCPV6_RULE, WHY_F22, "F22"))
    return out, changes


def _words(text: str) -> Iterable[list[str]]:
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words:
            yield words


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def context(texts: Mapping[str, str], node: str) -> Context:
    """What the seed's other files say about `node` (pure, tolerant: a file that does not parse
    contributes nothing here; the lint reports it on its own).

    Its own addresses come from `interfaces.NODE` and drbd0.res's `on NODE` section, the peers
    from ha.cf's `ucast` lines that are not its own, heartbeat's port from `udpport` (694 by
    default), and whether dnsmasq serves DHCPv6 from an IPv6 `dhcp-range`."""
    own: set[str] = set()
    for words in _words(texts.get(f"interfaces.{node}", "")):
        if words[0] == "address" and len(words) > 1 and (ip := _ip(words[1].split("/")[0])):
            own.add(ip)
    res = texts.get("drbd0.res", "")
    m = re.search(r"\bon\s+" + re.escape(node) + r"\s*\{[^}]*?\baddress\s+(?:ipv[46]\s+)?"
                  r"\[?([0-9A-Fa-f.:]+?)\]?:\d+\s*;", res)
    if m and (ip := _ip(m.group(1))):
        own.add(ip)
    peers: list[str] = []
    port = 694
    for words in _words(texts.get("ha.cf", "")):
        if words[0] == "ucast" and len(words) == 3 and (ip := _ip(words[2])):
            if ip not in own and ip not in peers:
                peers.append(ip)
        elif words[0] == "udpport" and len(words) > 1 and re.fullmatch(r"[0-9]{1,5}", words[1]):
            port = int(words[1])
    return Context(node, frozenset(own), tuple(peers), port, serves_dhcpv6(
        texts.get("dnsmasq.conf", "")))


def serves_dhcpv6(dnsmasq_conf: str) -> bool:
    """Does a `dhcp-range` of this dnsmasq.conf hand out IPv6 (DHCPv6, also `ra-stateless`)?"""
    for raw in dnsmasq_conf.splitlines():
        key, sep, value = raw.strip().partition("=")
        if key != "dhcp-range" or not sep:
            continue
        fields = [f for f in value.split(",") if not f.startswith(("set:", "tag:"))]
        if fields and (":" in fields[0] or any(f.startswith("constructor:") for f in fields)):
            return True
    return False


def render(texts: Mapping[str, str], node: str, keep: frozenset[str]
           ) -> tuple[str, list[Change]] | None:
    """The node's ruleset and its changes; None when the set has no `ufw` file (no firewall).
    Raises `UfwError` for a line it cannot render."""
    text = texts.get(UFW_SOURCE)
    if text is None:
        return None
    rules, changes = lab_rules(parse_ufw(text), context(texts, node), keep)
    changes.insert(0, Change(
        RULESET_PATH, "ufw", "(ufw enabled, with the `ufw allow` lines typed on each host)",
        "(the same rules in ufw's stock chains as one nftables table `inet ufw`, loaded at "
        "boot)", "a node has no ufw service or iptables state; `nft` runs in its own network "
        "namespace (`lab fw NODE` shows the rules and counters)"))
    return render_ruleset(rules, node), changes


def _is_host(net: str) -> bool:
    n = ipaddress.ip_network(net, strict=False)
    return n.num_addresses == 1


# -- nftables -------------------------------------------------------------------------------------
# ufw 0.36's before.rules (IPv4) and before6.rules (IPv6), in their order, as nft rules.
BEFORE_INPUT = (
    ('iifname "lo"', "accept", "before: loopback"),
    ("rt type 0", "drop", "before6: routing header type 0"),
    ("ct state related,established", "accept", "before: related/established"),
    ("icmpv6 type echo-reply", "accept", "before6: echo-reply"),
    ("ct state invalid", "drop", "before: invalid"),
    ("icmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request }",
     "accept", "before: ICMP"),
    ("icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, "
     "echo-request }", "accept", "before6: ICMPv6"),
    ("icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
     "nd-neighbor-advert, 141, 142 } ip6 hoplimit 255",
     "accept", "before6: neighbour/router discovery"),
    ("icmpv6 type { 130, 131, 132, 143 } ip6 saddr fe80::/10", "accept", "before6: MLD"),
    ("icmpv6 type { 148, 149 } ip6 hoplimit 255", "accept", "before6: SEND certificates"),
    ("icmpv6 type { 151, 152, 153 } ip6 saddr fe80::/10 ip6 hoplimit 1", "accept",
     "before6: multicast router discovery"),
    ("icmpv6 type { 144, 145, 146, 147 }", "accept", "before6: mobile IPv6"),
    ("meta nfproto ipv4 udp sport 67 udp dport 68", "accept", "before: DHCP client"),
    ("ip6 saddr fe80::/10 ip6 daddr fe80::/10 udp sport 547 udp dport 546", "accept",
     "before6: DHCPv6 client"),
    ("meta nfproto ipv4 fib daddr type != { local, multicast, broadcast }", "drop",
     "before: not local"),
    ("ip daddr 224.0.0.251 udp dport 5353", "accept", "before: mDNS"),
    ("ip6 daddr ff02::fb udp dport 5353", "accept", "before6: mDNS"),
    ("ip daddr 239.255.255.250 udp dport 1900", "accept", "before: SSDP"),
    ("ip6 daddr ff02::f udp dport 1900", "accept", "before6: SSDP"),
)
BEFORE_OUTPUT = (
    ('oifname "lo"', "accept", "before: loopback"),
    ("rt type 0", "drop", "before6: routing header type 0"),
)
POLICY_COMMENT = "policy: deny incoming"


def _nft_ports(spec: str) -> str:
    parts = [p.replace(":", "-") for p in spec.split(",")]
    return parts[0] if len(parts) == 1 else "{ " + ", ".join(parts) + " }"


def _rule_expr(r: UfwRule) -> list[str]:
    """One ufw rule as nft expressions (one per protocol when ufw would write two)."""
    match: list[str] = []
    if r.iface:
        match.append(f'{"iifname" if r.direction == "in" else "oifname"} "{r.iface}"')
    for word, addr in (("saddr", r.src), ("daddr", r.dst)):
        if addr is not None:
            fam = "ip" if ipaddress.ip_network(addr).version == 4 else "ip6"
            match.append(f"{fam} {word} {addr}")
    ports: list[str] = []
    if r.sport:
        ports.append(f"sport {_nft_ports(r.sport)}")
    if r.port:
        ports.append(f"dport {_nft_ports(r.port)}")
    verdict = ACTIONS[r.action]
    comment = f'comment "{r.text[:120]}"'
    if not ports:
        proto = [f"meta l4proto {r.proto}"] if r.proto else []
        return [" ".join([*match, *proto, "counter", verdict, comment])]
    protos = [r.proto] if r.proto else list(PROTOS)
    return [" ".join([*match, *(f"{p} {x}" for x in ports), "counter", verdict, comment])
            for p in protos]


def render_ruleset(rules: Sequence[UfwRule], node: str) -> str:
    """The nftables script for one node (pure): ufw's stock chains around the user's rules."""
    def stock(entries: Sequence[tuple[str, str, str]]) -> list[str]:
        return [f'        {m} counter {v} comment "{c}"' for m, v, c in entries]

    user_in = [f"        {e}" for r in rules if r.direction == "in" for e in _rule_expr(r)]
    user_out = [f"        {e}" for r in rules if r.direction == "out" for e in _rule_expr(r)]
    return "\n".join([
        f"# {node}: the seed's ufw rules with ufw's default policy (rendered by hapair-lab)",
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "    chain input {",
        "        type filter hook input priority filter; policy drop;",
        *stock(BEFORE_INPUT),
        *user_in,
        f'        counter comment "{POLICY_COMMENT}"',
        "    }",
        "    chain output {",
        "        type filter hook output priority filter; policy accept;",
        *stock(BEFORE_OUTPUT),
        *user_out,
        '        counter comment "policy: allow outgoing"',
        "    }",
        "    chain forward {",
        "        type filter hook forward priority filter; policy drop;",
        '        ct state related,established counter accept comment "before: related/established"',
        '        counter comment "policy: deny routed"',
        "    }",
        "}",
        "",
    ])


# -- a running node -------------------------------------------------------------------------------
def apply(node: Node, path: str = RULESET_PATH) -> None:
    """Load the rendered ruleset inside the node's network namespace (atomically)."""
    rc, out = node.execute(f"nft -f {path}")
    if rc != 0:
        raise RuntimeError(f"{node.name}: nft refused {path}: {out.strip()}")


def listing(node: Node) -> str:
    """`nft list table inet ufw` inside the node (counters included); empty if none."""
    rc, out = node.execute(f"nft list table inet {TABLE}", timeout=10)
    return out if rc == 0 else ""


_COUNTER_RE = re.compile(r"\s*counter packets (\d+) bytes (\d+)")
_COMMENT_RE = re.compile(r'\s*comment "([^"]*)"')


@dataclass(frozen=True)
class RuleCounter:
    """One rule of the listing with its counter."""

    chain: str
    rule: str  # the rule without its counter and comment
    comment: str
    packets: int
    bytes: int


def counters(text: str) -> list[RuleCounter]:
    """Every counted rule of an `nft list table` listing (pure), in order."""
    out: list[RuleCounter] = []
    chain = ""
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"chain (\S+) \{", line)
        if m:
            chain = m.group(1)
            continue
        c = _COUNTER_RE.search(line)
        if not c:
            continue
        comment = _COMMENT_RE.search(line)
        rule = _COMMENT_RE.sub("", _COUNTER_RE.sub("", line)).strip()
        out.append(RuleCounter(chain, rule, comment.group(1) if comment else "",
                               int(c.group(1)), int(c.group(2))))
    return out


def table(node: str, rows: Sequence[RuleCounter]) -> Table:
    """`lab fw NODE`: one row per rule, its counter, the seed's line (or ufw's stock rule)."""
    from rich.table import Table

    out = Table(title=f"{node}: nft table inet {TABLE} (the seed's ufw rules, ufw's policy)")
    for column in ("chain", "rule", "from", "packets", "bytes"):
        out.add_column(column, justify="right" if column in ("packets", "bytes") else "left")
    for r in rows:
        style = "" if r.packets else "dim"
        out.add_row(r.chain, r.rule or "(count only)", r.comment, str(r.packets), str(r.bytes),
                    style=style)
    return out


def summary(text: str) -> dict[str, int | bool]:
    """What `lab status` shows per server: is the table loaded, its rules, packets denied."""
    rows = counters(text)
    denied = sum(r.packets for r in rows if r.comment == POLICY_COMMENT)
    dropped = sum(r.packets for r in rows if r.rule.endswith("drop") and r.chain == "input")
    return {"active": bool(text.strip()), "rules": len(rows), "denied": denied,
            "dropped": dropped}
