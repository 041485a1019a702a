"""A picture of the root namespace, to prove a lab left it exactly as it was.

The lab promises never to give the root namespace a link, address, route, named netns, mount or
cgroup, and to leave no process or loop device behind. `snapshot()` reads all of these (read-only)
and `differences()` names what changed.

Other labs -- parallel pytest workers, a `lab up` in another terminal -- come and go while a
snapshot is taken, so every read tolerates entries vanishing or appearing mid-walk (lab.walk):
a snapshot describes what was there and never fails because another lab removed its cgroup or
a process exited. And `differences()` judges one lab by what is its own: see there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from lab import walk
from lab.cgroup import TOP, hierarchy_root


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
    links, addresses, routes = _network()
    named = frozenset(p.name for p in walk.children(Path("/run/netns")))
    mounts = frozenset(" ".join(line.split()[3:]) for line in
                       Path("/proc/self/mountinfo").read_text().splitlines())
    cgroups = frozenset(str(p) for p in walk.walk(hierarchy_root(), dirs_only=True))
    return Snapshot(links, addresses, routes, named, mounts, frozenset(_loops()), cgroups,
                    frozenset(_processes()))


def _network() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Links, addresses and routes of the root namespace. Links come from one dump, and the
    index -> name map from that same dump, so no link can vanish between two reads of them."""
    with IPRoute() as ip:
        dump = list(ip.get_links())
        addr_dump = list(ip.get_addr())
        route_dump = [r for family in (2, 10) for r in ip.get_routes(family=family)]
    names = {link.get("index"): link.get("ifname") for link in dump}
    links = frozenset(f"{link.get('ifname')} {link.get('address')} {link.get('state')}"
                      for link in dump)
    addresses = frozenset(f"{names.get(a.get('index'))} {a.get('address')}/"
                          f"{a.get('prefixlen')}" for a in addr_dump)
    routes = frozenset(
        f"{r.get('family')} {r.get('dst')}/{r.get('dst_len')} via {r.get('gateway')} "
        f"dev {names.get(r.get('oif'))} table {r.get('table')}" for r in route_dump)
    return links, addresses, routes


def _loops() -> list[str]:
    """Attached loop devices: a detached one has no loop/backing_file (or loses it mid-read)."""
    result = []
    for device in walk.children(Path("/sys/block")):
        if not device.name.startswith("loop"):
            continue
        backing = walk.read_text(device / "loop" / "backing_file")
        if backing is not None:
            result.append(f"{device.name} -> {backing.strip()}")
    return result


def _processes() -> list[str]:
    """Every process as "pid:cmdline"; one that exits while /proc is read is left out."""
    result = []
    for proc in walk.children(Path("/proc")):
        if not proc.name.isdigit():
            continue
        cmdline = walk.read_bytes(proc / "cmdline")
        if cmdline is not None:
            cmd = cmdline.replace(b"\0", b" ").decode(errors="replace")
            result.append(f"{proc.name}:{cmd.strip()}")
    return result


def _under(text: str, directory: Path) -> bool:
    """Whether `text` names `directory` or a path below it as a whole path: the lab t1-1's
    directory must not claim t1-12's files."""
    return re.search(re.escape(str(directory)) + r"(?=/|\s|$)", text) is not None


def _cgroup_owner(path: str) -> str | None:
    """The lab a cgroup below the lab hierarchy belongs to: the component right below the
    hierarchy's top (``.../hapair-lab[-<hash>]/<lab>/<node>``)."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == TOP or part.startswith(TOP + "-"):
            return parts[i + 1]
    return None


def differences(before: Snapshot, after: Snapshot, lab_dir: Path, lab_name: str) -> list[str]:
    """What `after` has that `before` did not (or lost), judging lab `lab_name` only by what is
    its own.

    Other labs may legitimately make and remove loop devices, cgroups and processes between the
    two snapshots, so these are compared only where they belong to this lab: a loop device whose
    backing file lies in the lab's directory, a cgroup whose owner component below the lab
    hierarchy is the lab's name, a process whose command line names a path in the lab's
    directory (whole path components: lab t1-1 never answers for t1-12).

    Links, addresses, routes, named netns and mounts of the root namespace must be identical:
    no lab ever creates any of them there (a node's links, addresses and routes live in its own
    network namespace, a veth's ends are created directly inside the switch and the node, no
    lab uses `ip netns` bind mounts, and every mount a lab makes -- FUSE, loop ext4, fusectl --
    is made inside a private mount namespace), so any change is a broken promise whichever lab
    made it -- or something outside the lab changed the machine meanwhile.
    """
    problems: list[str] = []
    for field in ("links", "addresses", "routes", "named_netns", "mounts"):
        old, new = getattr(before, field), getattr(after, field)
        for item in sorted(new - old):
            problems.append(f"{field}: appeared: {item}")
        for item in sorted(old - new):
            problems.append(f"{field}: vanished: {item}")
    for loop in sorted(after.loops - before.loops):
        if _under(loop, lab_dir):
            problems.append(f"loop device left: {loop}")
    for cg in sorted(after.cgroups - before.cgroups):
        if _cgroup_owner(cg) == lab_name:
            problems.append(f"cgroup left: {cg}")
    for proc in sorted(after.processes - before.processes):
        if _under(proc, lab_dir):
            problems.append(f"process left: {proc}")
    return problems

