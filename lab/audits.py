"""Audits after every scenario, in the spirit of Pacemaker's CTS: invariants that must hold
once a fault is over, and a scan of the nodes' logs for bad news.

The checks are pure functions over `lab.status()` and log texts, so they are unit-tested on
recorded data; the pytest plugin runs them (waiting a while for the cluster to settle, as CTS
does) and fails the test with the evidence. A scenario that leaves the cluster differently on
purpose says so: ``@pytest.mark.audit(skip=["drbd"], ignore=[r"split-brain"])``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import walk

AUDITS = ("vips", "dnsmasq", "drbd", "logs")

# Lines that mean something went wrong, in any node log the lab keeps.
BAD_NEWS = (
    r"\bCRIT:",
    r"\bERROR:",
    r"Giving up resources",
    r"Traceback \(most recent call last\)",
    r"Segmentation fault|core dumped",
    r"split-brain",
    r"emergency",
)
# What the seed's design logs after a split, by its own choice: DRBD's split-brain and
# pri-lost-after-sb handlers (their mail to root finds no MTA), heartbeat giving resources up
# and complaining. A scenario that splits the pair on purpose ignores these in its audit:
# `@pytest.mark.audit(ignore=AFTER_A_SPLIT)`.
AFTER_A_SPLIT = (r"split-brain", r"Giving up resources", r"ERROR:", r"CRIT:", r"emergency",
                 r"mail: command not found")
# Said on every start of heartbeat in a namespace container, and harmless there:
# RLIMIT_MEMLOCK is small in the container, and nobody needs heartbeat's pages locked in a lab.
ALWAYS_IGNORED = (
    r"Cannot lock ourselves into memory",
)


@dataclass(frozen=True)
class Finding:
    audit: str
    message: str
    subject: str = ""  # the VIP or node it is about: where `evidence` looks in the logs

    def __str__(self) -> str:
        return f"[{self.audit}] {self.message}"


def vip_findings(status: Mapping[str, Any]) -> list[Finding]:
    """Each VIP is held by exactly one node."""
    vips = status.get("vip")
    if vips is None:
        return []
    found = []
    for vip, nodes in sorted(holders_by_vip(status).items()):
        if len(nodes) != 1:
            found.append(Finding("vips", f"{vip} is held by {len(nodes)} nodes "
                                         f"({', '.join(nodes) or 'none'})", vip))
    return found


def holders_by_vip(status: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every VIP of the topology, with every node whose interfaces carry it (none: [])."""
    holders = _all_holders(status)
    return {vip: holders.get(vip, [holder] if holder else [])
            for vip, holder in (status.get("vip") or {}).items()}


def _all_holders(status: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every node whose interfaces carry each VIP (status["vip"] names only one)."""
    result: dict[str, list[str]] = {}
    vips = set(status.get("vip", {}))
    for node, entry in status.get("nodes", {}).items():
        for addrs in entry.get("interfaces", {}).values():
            for addr in addrs:
                ip = addr.split("/")[0]
                if _canonical(ip) in {_canonical(v) for v in vips}:
                    key = next(v for v in vips if _canonical(v) == _canonical(ip))
                    result.setdefault(key, []).append(node)
    return result


def _canonical(address: str) -> str:
    import ipaddress
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def dnsmasq_findings(status: Mapping[str, Any]) -> list[Finding]:
    """Exactly one node serves DNS/DHCP."""
    services = status.get("services")
    if services is None:
        return []
    running = sorted(n for n, s in services.items() if s.get("dnsmasq"))
    if len(running) != 1:
        return [Finding("dnsmasq", f"dnsmasq runs on {len(running)} nodes "
                                   f"({', '.join(running) or 'none'})")]
    return []


def drbd_findings(status: Mapping[str, Any]) -> list[Finding]:
    """Both replicas Connected and UpToDate, exactly one Primary."""
    drbd = status.get("drbd")
    if not drbd:
        return []
    found = []
    for node, state in sorted(drbd.items()):
        if state.get("cstate") != "Connected" or state.get("dstate") != "UpToDate":
            found.append(Finding("drbd", f"{node}: {state.get('role')} "
                                         f"{state.get('cstate')}/{state.get('dstate')}", node))
    primaries = sorted(n for n, s in drbd.items() if s.get("role") == "Primary")
    if len(primaries) != 1:
        found.append(Finding("drbd", f"{len(primaries)} Primary ({', '.join(primaries)})"))
    return found


def log_findings(logs: Mapping[str, str], ignore: Iterable[str] = ()) -> list[Finding]:
    """Bad-news lines in node logs (``{"lsvm2/ha-log": text}``), minus the ignore list."""
    bad = re.compile("|".join(BAD_NEWS))
    skip = [re.compile(p) for p in (*ALWAYS_IGNORED, *ignore)]
    found = []
    for source, text in sorted(logs.items()):
        for line in text.splitlines():
            if bad.search(line) and not any(p.search(line) for p in skip):
                found.append(Finding("logs", f"{source}: {line.strip()[:300]}"))
    return found


_ADDRESS_TOKEN = re.compile(r"[0-9A-Fa-f:.]{7,}")


def _mentions(line: str, address: str) -> bool:
    """Whether a log line names this address in any spelling (heartbeat's resource lines keep
    haresources' zero-padded groups: …:c0a8:0304 for …:c0a8:304)."""
    want = _canonical(address)
    return any(_canonical(token.strip(":.")) == want
               for token in _ADDRESS_TOKEN.findall(line))


def evidence(findings: Iterable[Finding], logs: Mapping[str, str], lines: int = 6) -> list[str]:
    """Log lines that explain state findings, so a failure can be understood from its message
    alone (a CI clone's artifacts are gone): for a VIP, the last heartbeat/resource-agent lines
    that name it, from every node; for DRBD, the node's last replicator events."""
    out: list[str] = []
    for f in findings:
        if f.audit == "vips" and f.subject:
            for source, text in sorted(logs.items()):
                if source.endswith("/ha-log"):
                    hits = [ln.strip() for ln in text.splitlines() if _mentions(ln, f.subject)]
                    out += [f"{source}: {ln[:300]}" for ln in hits[-lines:]]
        elif f.audit == "drbd" and f.subject:
            text = logs.get(f"{f.subject}/drbd-events.log", "")
            out += [f"{f.subject}/drbd-events.log: {ln.strip()[:300]}"
                    for ln in text.splitlines()[-lines:]]
    return list(dict.fromkeys(out))


def state_findings(status: Mapping[str, Any], skip: Iterable[str] = ()) -> list[Finding]:
    skipped = set(skip)
    found: list[Finding] = []
    if "vips" not in skipped:
        found += vip_findings(status)
    if "dnsmasq" not in skipped:
        found += dnsmasq_findings(status)
    if "drbd" not in skipped:
        found += drbd_findings(status)
    return found


def read_logs(log_dirs: Mapping[str, Path], since: Mapping[str, int] | None = None
              ) -> dict[str, str]:
    """Every text log below each node's /var/log, from byte offset `since` (if given). The
    node's daemons keep writing, rotating and removing logs meanwhile: a file or directory
    that vanishes during the walk is left out rather than failing the read."""
    logs: dict[str, str] = {}
    for node, directory in log_dirs.items():
        for path in walk.walk(directory):
            if not path.is_file() or path.suffix in (".pcap", ".gz"):
                continue
            key = f"{node}/{path.relative_to(directory)}"
            try:
                with path.open("rb") as f:
                    f.seek((since or {}).get(key, 0))
                    logs[key] = f.read().decode(errors="replace")
            except OSError:
                continue
    return logs
