"""A picture of the root namespace, to prove a lab left it exactly as it was.

The lab promises never to give the root namespace a link, address, route, named netns, mount or
cgroup, and to leave no process or loop device behind. `snapshot()` reads all of these (read-only)
and `differences()` names what changed. Loop devices and processes are compared by what belongs
to one lab (its directory, its cgroups), because other labs -- parallel pytest workers -- may
legitimately come and go meanwhile; everything else must be identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from lab.cgroup import hierarchy_root


@dataclass(frozen=True)
class Snapshot:
    links: frozenset[str]
    addresses: frozenset[str]
    routes: frozenset[str]
    named_netns: frozenset[str]
    mounts: frozenset[str]
    loops: frozenset[str]  # "loopN -> backing file"
    cgroups: frozenset[str]  # below the lab hierarchy
    processes: frozenset[str]  # "pid:cmdline" of every process


def snapshot() -> Snapshot:
    with IPRoute() as ip:
        names = {link.get("index"): link.get("ifname") for link in ip.get_links()}
        links = frozenset(f"{link.get('ifname')} {link.get('address')} {link.get('state')}"
                          for link in ip.get_links())
        addresses = frozenset(f"{names.get(a.get('index'))} {a.get('address')}/"
                              f"{a.get('prefixlen')}" for a in ip.get_addr())
        routes = frozenset(
            f"{r.get('family')} {r.get('dst')}/{r.get('dst_len')} via {r.get('gateway')} "
            f"dev {names.get(r.get('oif'))} table {r.get('table')}"
            for family in (2, 10) for r in ip.get_routes(family=family))
    netns_dir = Path("/run/netns")
    named = frozenset(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else frozenset()
    mounts = frozenset(" ".join(line.split()[3:]) for line in
                       Path("/proc/self/mountinfo").read_text().splitlines())
    loops = frozenset(_loops())
    root = hierarchy_root()
    cgroups = frozenset(str(p) for p in root.rglob("*") if p.is_dir()) if root.is_dir() \
        else frozenset()
    return Snapshot(links, addresses, routes, named, mounts, loops, cgroups,
                    frozenset(_processes()))


def _loops() -> list[str]:
    result = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            result.append(f"{backing.parent.parent.name} -> {backing.read_text().strip()}")
        except OSError:
            continue
    return result


def _processes() -> list[str]:
    result = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        result.append(f"{entry.name}:{cmd.strip()}")
    return result


def differences(before: Snapshot, after: Snapshot, lab_dir: Path, lab_name: str) -> list[str]:
    """What `after` has that `before` did not (or lost), limited to one lab where others may run."""
    problems: list[str] = []
    for field in ("links", "addresses", "routes", "named_netns", "mounts"):
        old, new = getattr(before, field), getattr(after, field)
        for item in sorted(new - old):
            problems.append(f"{field}: appeared: {item}")
        for item in sorted(old - new):
            problems.append(f"{field}: vanished: {item}")
    for loop in sorted(after.loops - before.loops):
        if str(lab_dir) in loop or lab_name in loop:
            problems.append(f"loop device left: {loop}")
    for cg in sorted(after.cgroups - before.cgroups):
        if f"/{lab_name}" in cg:
            problems.append(f"cgroup left: {cg}")
    for proc in sorted(after.processes - before.processes):
        if str(lab_dir) in proc:
            problems.append(f"process left: {proc}")
    return problems
