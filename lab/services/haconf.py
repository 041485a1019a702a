"""Parsers for heartbeat's ha.cf and haresources, the way heartbeat itself reads them.

Pure. Why not a generic key/value reader: heartbeat's rules are specific — haresources joins
lines ending in `\\`, drops `#` comments, splits on blanks, and splits a resource's arguments on
`::` (so an IPv6 address with `::` shorthand breaks); a bare dotted address means `IPaddr::`.
The lint and the status view both need exactly those rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HA_CF_DIRECTIVES = frozenset({
    "auto_failback", "autojoin", "crm", "pacemaker", "deadtime", "initdead", "warntime",
    "keepalive", "node", "ucast", "bcast", "mcast", "serial", "baud", "udpport", "logfile",
    "debugfile", "logfacility", "use_logd", "debug", "ping", "ping_group", "respawn",
    "apiauth", "compression", "traditional_compression", "hopfudge", "deadping", "realtime",
    "uuidfrom", "stonith", "stonith_host", "watchdog", "msgfmt", "coredumps", "conn_logd_time",
    "max_rexmit_delay", "rtprio", "generation_file_sync", "memreserve", "quorum_server",
})
TIME_DIRECTIVES = frozenset({"deadtime", "initdead", "warntime", "keepalive", "deadping"})
_TIME_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|us)?$")


class HaConfError(ValueError):
    """A problem at `file:line`."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem = file, line, problem


@dataclass(frozen=True)
class Directive:
    line: int
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class HaCf:
    directives: tuple[Directive, ...]

    def values(self, name: str) -> list[Directive]:
        return [d for d in self.directives if d.name == name]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(a for d in self.values("node") for a in d.args)

    def time_ms(self, name: str, default: float | None = None) -> float | None:
        found = self.values(name)
        return parse_time_ms(found[-1].args[0]) if found else default


def parse_time_ms(text: str) -> float:
    """heartbeat times: a bare number is seconds; `ms`/`us` suffixes as written."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not a time: {text!r}")
    value, unit = float(m.group(1)), m.group(2) or "s"
    return value * {"s": 1000.0, "ms": 1.0, "us": 0.001}[unit]


def parse_ha_cf(text: str, file: str = "ha.cf") -> HaCf:
    out: list[Directive] = []
    for no, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        name, args = words[0], tuple(words[1:])
        if name not in HA_CF_DIRECTIVES:
            raise HaConfError(file, no, f"unknown directive {name!r}")
        if not args:
            raise HaConfError(file, no, f"{name}: missing value")
        if name in TIME_DIRECTIVES:
            try:
                parse_time_ms(args[0])
            except ValueError:
                raise HaConfError(file, no, f"{name}: {args[0]!r} is not a time") from None
        out.append(Directive(no, name, args))
    return HaCf(tuple(out))


@dataclass(frozen=True)
class Resource:
    """One resource of a group: `script` and its `::`-separated arguments."""

    line: int
    text: str
    script: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Group:
    line: int
    node: str
    resources: tuple[Resource, ...]


def _is_dotted_ip(token: str) -> bool:
    # ResourceManager's isip(): [0-9]*.[0-9]*.[0-9]*.[0-9]* as a shell pattern
    return re.match(r"^[0-9].*\..*\..*\.", token) is not None


def resource_of(token: str, line: int) -> Resource:
    """Script and arguments as ResourceManager's resource2script/resource2arg compute them."""
    canon = f"IPaddr::{token}" if _is_dotted_ip(token) else token
    if "::" not in canon:
        return Resource(line, token, canon, ())
    script, _, rest = canon.partition("::")
    return Resource(line, token, script, tuple(rest.split("::")))


def parse_haresources(text: str, file: str = "haresources") -> tuple[Group, ...]:
    """Groups of a haresources file, each resource with the line it was written on."""
    groups: list[Group] = []
    tokens: list[tuple[str, int]] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        body = raw.split("#", 1)[0]
        cont = body.rstrip().endswith("\\")
        body = body.rstrip().rstrip("\\")
        if not tokens:
            start = no
        tokens += [(w, no) for w in body.split()]
        if not cont and tokens:
            node = tokens[0][0]
            groups.append(Group(start, node, tuple(resource_of(w, n) for w, n in tokens[1:])))
            tokens = []
    if tokens:
        raise HaConfError(file, start, "the last line ends with a continuation `\\`")
    return tuple(groups)
