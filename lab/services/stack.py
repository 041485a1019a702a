"""`SeedStack`: the seed's whole design on a lab — the init system of every node.

Why a stack object: the lab knows machines and wires; this knows what the seed runs on each of
them. `prepare` renders the seed's configuration (lab.services.render) onto the nodes' disks once,
`boot` starts what a node's init would start (heartbeat on the pair, which then starts the disk,
the VIPs, dnsmasq and ddclient itself; the resolver and NAT on rtbr1; the registrar on inet;
dhclient on the clients), `halt` stops heartbeat in order so the peer takes over.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import netns
from lab.node import NodeError
from lab.services import dhclient, disk, firewall, health, heartbeat, registrar, resolver, router
from lab.services.haconf import parse_haresources
from lab.services.lint import lint
from lab.services.pki import make_pki
from lab.services.proc import spawn
from lab.services.profiles import CHOICES, load_profile
from lab.services.render import (
    DNSMASQ_DIR,
    LAB_CA_PATH,
    OPTIMISTIC_DAD_SYSCTLS,
    SEED_DIR,
    NodeConfig,
    RenderOptions,
    Secrets,
    all_changes,
    load_seed,
    render_pair,
)
from lab.services.secrets import generate
from lab.stack import Stack

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node
    from lab.topology import Topology

REGISTRAR_NAME = "dynamicdns.park-your-domain.com"
PUBLIC_DOMAIN = "thesteins.org"
EXAMPLE_ADDRESSES = ("203.0.113.80", "2001:db8:ffff::80")
# Source-port ranges of the router's NAT per HA server (see lab.services.router).
NAT_PORTS = {"lsvm1": (20000, 29999), "lsvm2": (30000, 39999)}
SYSLOG_LOG = "/var/log/syslog"


def _env_findings() -> frozenset[str]:
    raw = os.environ.get("HAPAIR_KEEP_FINDINGS", "")
    return frozenset(x.strip() for x in raw.split(",") if x.strip())


def _agent(key: str, value: str) -> str:
    """A resource agent choice (`ipv6addr`, `ipaddr`), checked against the profiles' own list."""
    if value not in CHOICES[key]:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    return value


class SeedStack(Stack):
    """The seed's design. `keep_findings` (or $HAPAIR_KEEP_FINDINGS=F1,F2) leaves fixes out."""

    name = "seed"

    def __init__(self, profile: str = "seed",
                 keep_findings: frozenset[str] | list[str] | None = None,
                 ipv6addr: str | None = None, await_ready: bool = True,
                 ipaddr: str | None = None) -> None:
        self.profile = load_profile(profile)
        # the profile's IPv6addr and IPaddr agents unless the lab asks for others (a comparison)
        self.ipv6addr = _agent("ipv6addr", ipv6addr or self.profile.ipv6addr)
        self.ipaddr = _agent("ipaddr", ipaddr or self.profile.ipaddr)
        # False: `up` returns once every node booted, for a kept finding that keeps the pair
        # from ever becoming ready (F20); the scenario then waits for what it shows
        self.await_ready = await_ready
        self.profile_name = profile
        self.keep_findings = _env_findings() if keep_findings is None else frozenset(
            keep_findings)
        self.disk_mode = "replicated" if disk.available() else "local"

    # -- where things live ------------------------------------------------------------------------
    @staticmethod
    def state_dir(lab: Lab) -> Path:
        return Path(lab.dir) / "services"

    def options(self) -> RenderOptions:
        return RenderOptions(keep_findings=self.keep_findings, disk=self.disk_mode,
                             ipv6addr=self.ipv6addr, ipaddr=self.ipaddr)

    def secrets(self, lab: Lab) -> Secrets:
        data = json.loads((self.state_dir(lab) / "secrets.json").read_text())
        return Secrets(**data)

    def configs(self, lab: Lab) -> dict[str, NodeConfig]:
        return render_pair(load_seed(), self.profile, self.secrets(lab), self.options())

    @staticmethod
    def servers(lab: Lab) -> list[Node]:
        return [n for n in lab if n.spec.role == "server"]

    @staticmethod
    def _one(lab: Lab, role: str) -> Node | None:
        nodes = [n for n in lab if n.spec.role == role]
        return nodes[0] if nodes else None

    def options_record(self) -> dict[str, Any]:
        """What `Lab.attach` needs to rebuild this stack exactly (saved in lab.json)."""
        return {"keep_findings": sorted(self.keep_findings), "ipv6addr": self.ipv6addr,
                "ipaddr": self.ipaddr,
                "await_ready": self.await_ready}

    def check(self, topology: Topology) -> list[str]:
        """`lab lint` of the seed's configuration, as this lab would render it."""
        if self.keep_findings:
            return []  # the user asked for the seed's own faults: lint would name exactly those
        problems = lint(SEED_DIR, topology, self.profile, options=self.options())
        return [str(p) for p in problems if p.level == "error"]

    def wait_ready(self, lab: Lab, timeout: float = 180.0) -> float:
        return health.wait_ready(lab, timeout=timeout) if self.await_ready else 0.0

    # -- prepare: once, before the first boot ----------------------------------------------------
    def prepare(self, lab: Lab) -> None:
        state = self.state_dir(lab)
        state.mkdir(mode=0o700, exist_ok=True)
        secrets_file = state / "secrets.json"
        if not secrets_file.exists():
            fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(generate().__dict__, out)
        pki = make_pki(state / "pki", REGISTRAR_NAME)
        configs = self.configs(lab)
        (state / "changes.json").write_text(json.dumps(
            [c.__dict__ for c in all_changes(configs, self.profile)], indent=1))
        for node in self.servers(lab):
            cfg = configs[node.name]
            for f in cfg.files:
                if f.path.startswith(DNSMASQ_DIR + "/") and self.disk_mode == "replicated":
                    target = state / "disk-content" / f.path.lstrip("/")
                elif f.path == "/etc/network/interfaces":  # reference only: ifupdown is not run
                    target = state / "reference" / node.name / "interfaces"
                else:
                    target = node.path(f.path)
                _write(target, f.content, f.mode)
            shutil.copyfile(pki.ca_cert, node.path(LAB_CA_PATH))
            heartbeat.forget_identity(node.path("/var/lib/heartbeat"))
        for node in lab:
            if node.spec.role == "client":
                _write(node.path(dhclient.CONF), dhclient.dhclient_conf(node.name), 0o644)
            elif node.spec.role == "internet":
                router_node = self._one(lab, "router")
                resolv = ""
                if router_node is not None:
                    wan = _address_on(router_node, "internet", 4)
                    resolv = f"nameserver {wan}\n" if wan else ""
                _write(node.path("/etc/resolv.conf"), resolv, 0o644)
                registrar.install(node, pki, self.secrets(lab).ddns_password)

    # -- boot: every time a node powers on --------------------------------------------------------
    def boot(self, node: Node) -> None:
        role = node.spec.role
        if role == "router":
            self._boot_router(node)
        elif role == "internet":
            self._routes_back(node)
            registrar.start(node, router.attribution(self._nat_ranges(node.lab)))
        elif role == "client":
            self._boot_client(node)
        elif role == "server":
            self._boot_server(node)

    def _boot_client(self, node: Node) -> None:
        """A client: optimistic DAD where the profile asks for it (set before any router
        advertisement makes a SLAAC address, and as the default for links made later, such as
        the DHCP fleet's), then its DHCP client."""
        if self.profile.optimistic_dad:
            names = ["default", *(i.name for i in node.spec.interfaces)]
            for name, key in itertools.product(names, OPTIMISTIC_DAD_SYSCTLS):
                netns.write_sysctl(node.netns_path, f"net/ipv6/conf/{name}/{key}", "1")
        dhclient.start(node, node.spec.interfaces[0].name)

    def _nat_ranges(self, lab: Lab) -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        for n in self.servers(lab):
            if n.name in NAT_PORTS:
                addr = _address_on(n, "vlan1", 4)
                if addr:
                    out[n.name] = (addr, *NAT_PORTS[n.name])
        return out

    def _routes_back(self, node: Node) -> None:
        """The "Internet" routes the lab's IPv6 prefixes to rtbr1, as an ISP routes a customer's
        prefix (IPv4 needs none: rtbr1 NATs). Inside inet's own netns only."""
        rtr = self._one(node.lab, "router")
        via = _address_on(rtr, "internet", 6) if rtr else None
        if via is None:
            return
        prefixes = {str(s.ipv6) for s in node.lab.topology.segments.values()
                    if s.ipv6 is not None and s.name != "internet"}
        for prefix in sorted(prefixes):
            node.succeed(f"ip -6 route replace {prefix} via {via}")

    def _boot_router(self, node: Node) -> None:
        wan = next(i for i in node.spec.interfaces if i.segment == "internet")
        public = str(next(a.ip for a in wan.addresses if a.version == 4))
        router.apply(node, router.nat_ruleset(wan.name, public, self._nat_ranges(node.lab)))
        inet = self._one(node.lab, "internet")
        registrar_addrs = tuple(str(a.ip) for i in inet.spec.interfaces
                                for a in i.addresses) if inet else ()
        v6 = [str(a.ip) for a in wan.addresses if a.version == 6]
        resolver.start(node, {
            "example.com": EXAMPLE_ADDRESSES,
            REGISTRAR_NAME: registrar_addrs,
            PUBLIC_DOMAIN: (public, *v6[:1]),
        })

    def boot_all(self, nodes: list[Node]) -> dict[str, float]:
        """`lab up`, a cold start: the servers' syslog, firewall and heartbeat run directories side
        by side, then both heartbeats launched together (the moment heartbeat's start-up delay
        begins); the disks attach and the pair's disk is made (once) inside that delay, which
        heartbeat waits out before it touches the disk (checked: `lab up` fails if heartbeat
        acted first); then the other nodes boot, also inside it. A node that boots alone (a
        reboot) keeps the order of its init scripts: the disk, then heartbeat."""
        seconds: dict[str, float] = {}

        def timed(step: Callable[[Node], None], node: Node) -> None:
            began = time.monotonic()
            step(node)
            seconds[node.name] = seconds.get(node.name, 0.0) + time.monotonic() - began

        def side_by_side(step: Callable[[Node], None], group: list[Node]) -> None:
            with ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
                for done in [pool.submit(timed, step, n) for n in group]:
                    done.result()
        servers = [n for n in nodes if n.spec.role == "server"]
        side_by_side(self._server_base, servers)
        if servers:
            lead = next((n for n in servers if n.name == self.preferred(servers[0].lab)),
                        servers[-1])
            for n in servers:
                heartbeat.launch(n)
            if self.disk_mode == "replicated":
                side_by_side(disk.boot, servers)
                timed(lambda _lead: self._make_disk_once(servers), lead)
                early = [n.name for n in servers if heartbeat.acquired_resources(n)]
                if early:
                    raise NodeError(f"heartbeat on {', '.join(early)} took resources before the "
                                    "replicated disk was ready: the machine is too slow for a "
                                    "cold start inside heartbeat's start-up delay")
            if self.await_ready:
                for n in servers:
                    heartbeat.wait_running(n)
        for node in nodes:
            if node.spec.role != "server":
                timed(self.boot, node)
        return seconds

    def _boot_server(self, node: Node) -> None:
        self._server_base(node)
        if self.disk_mode == "replicated":
            disk.boot(node)
        if self.disk_mode != "replicated" or self._bootstrapped(node.lab).exists():
            self._start_heartbeat(node)
            return
        # First boot of the pair, one node at a time: the first server to boot waits for the
        # other (the disk is made before heartbeat runs anywhere, which needs both servers up)
        servers = self.servers(node.lab)
        if all(n.state == "running" for n in servers):
            self._pair_start(servers)

    def _bootstrapped(self, lab: Lab) -> Path:
        """The marker that the pair's disk was made (its one-time bootstrap is done)."""
        return self.state_dir(lab) / "disk-bootstrapped"

    def _server_base(self, node: Node) -> None:
        """What a server's init starts before heartbeat, the replicated disk aside: its syslog,
        the seed's firewall, heartbeat's run directories."""
        spawn(node, [node.python, "-m", "lab.services.syslogd", "/dev/log", SYSLOG_LOG],
              "/var/log/syslogd.out")
        node.wait_until_succeeds("test -S /dev/log", timeout=10)
        if node.path(firewall.RULESET_PATH).exists():  # the seed's ufw, up before any daemon
            firewall.apply(node)
        heartbeat.prepare_runtime(node)

    def _pair_start(self, servers: list[Node]) -> None:
        """Both servers booted one by one (disks attached): like the seed's manual steps, the
        disk is made (once) before heartbeat runs anywhere; then both heartbeats are launched
        together."""
        self._make_disk_once(servers)
        for n in servers:
            heartbeat.launch(n)
        if self.await_ready:
            for n in servers:
                heartbeat.wait_running(n)

    def _make_disk_once(self, servers: list[Node]) -> None:
        """The pair's one-time disk bootstrap (Primary on the preferred node, the file system,
        dnsmasq's files from the rendered configuration), unless it was made before."""
        lab = servers[0].lab
        marker = self._bootstrapped(lab)
        if self.disk_mode != "replicated" or marker.exists():
            return
        primary = next((n for n in servers if n.name == self.preferred(lab)), servers[-1])
        secondary = next(n for n in servers if n is not primary)
        content = self.state_dir(lab) / "disk-content"
        files = {"/" + str(p.relative_to(content)): p.read_text()
                 for p in sorted(content.rglob("*")) if p.is_file()}
        disk.bootstrap(primary, secondary, files)
        marker.touch()

    def _start_heartbeat(self, node: Node) -> None:
        """Start heartbeat; wait for it to answer unless told not to wait for readiness (a kept
        finding can leave heartbeat's API silent: F20 pauses its clients)."""
        heartbeat.launch(node)
        if self.await_ready:
            heartbeat.wait_running(node)

    def preferred(self, lab: Lab) -> str:
        """The node haresources names first (the seed's primary, lsvm2)."""
        text = self.configs(lab)[self.servers(lab)[0].name].file("/etc/ha.d/haresources").content
        groups = parse_haresources(text)
        return groups[0].node if groups else ""

    # -- halt / crash -----------------------------------------------------------------------------
    def halt(self, node: Node) -> None:
        if node.spec.role == "server":
            heartbeat.stop(node)
            if self.disk_mode == "replicated":
                disk.halt(node)

    def after_crash(self, node: Node) -> None:
        if node.spec.role == "server" and self.disk_mode == "replicated":
            disk.after_crash(node)

    # -- status -----------------------------------------------------------------------------------
    def _look(self, node: Node) -> tuple[dict[str, list[str]], dict[str, Any], Any] | Exception:
        """One server's addresses, LOOK_SCRIPT's answer and its replica's state, or the error
        that stopped the look."""
        try:
            addresses = node.addresses()
            look = look_at_server(node)
            drbd = disk.status(node) if self.disk_mode == "replicated" else None
        except (NodeError, OSError) as exc:
            return exc
        return addresses, look, drbd

    def status(self, lab: Lab) -> dict[str, Any]:
        vips: dict[str, str | None] = {str(v.address): None for v in lab.topology.vips}
        holders: dict[str, list[str]] = {a: [] for a in vips}
        services: dict[str, dict[str, bool]] = {}
        mounts: dict[str, list[str]] = {}
        views: dict[str, Any] = {}
        drbd: dict[str, Any] = {}
        fw: dict[str, Any] = {}
        servers = self.servers(lab)
        running = [n for n in servers if n.state == "running"]
        # each server is asked in a thread of its own: a look is a process inside the node,
        # mostly waiting for heartbeat's API, and status is polled (readiness, settling)
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            looks = dict(zip([n.name for n in running],
                             pool.map(self._look, running), strict=True))
        for node in servers:
            services[node.name] = {"heartbeat": False, "dnsmasq": False, "ddclient": False}
            mounts[node.name] = []
            if node.name not in looks:
                continue
            seen = looks[node.name]
            if isinstance(seen, Exception):
                # the node lost power or froze while we looked (a DRBD handler's reboot -f,
                # a fault): report it as it is now, not as half of what it was
                views[node.name] = {"running": False, "changing": f"{type(seen).__name__}"}
                continue
            addresses, look, drbd_status = seen
            services[node.name] = look["services"]
            mounts[node.name] = look["mounts"]
            views[node.name] = look["heartbeat"]
            fw[node.name] = firewall.summary(look["firewall"])
            if drbd_status is not None:
                drbd[node.name] = drbd_status
            for addrs in addresses.values():
                for a in addrs:
                    ip = str(ipaddress.ip_interface(a.split()[0]).ip)
                    if ip in holders:
                        holders[ip].append(node.name)
        for addr, names in holders.items():
            vips[addr] = names[0] if len(names) == 1 else (",".join(names) if names else None)
        out: dict[str, Any] = {"drbd": drbd} if drbd else {}
        if any(f["active"] for f in fw.values()):
            out["firewall"] = fw
        return {**out, "vip": vips, "services": services, "mounts": mounts, "heartbeat": views,
                "disk_mode": self.disk_mode, "keep_findings": sorted(self.keep_findings)}


SERVICES_SCRIPT = (
    "cl_status hbstatus >/dev/null 2>&1 && echo heartbeat; "
    "p=$(cat /run/dnsmasq/dnsmasq.pid 2>/dev/null) && [ -d /proc/$p ] && echo dnsmasq; "
    "p=$(cat /run/ddclient.pid 2>/dev/null) && [ -d /proc/$p ] && echo ddclient; true"
)
# Everything `status` asks a server, in one process inside it: each look costs a process in
# the node's namespaces, and status is polled (readiness, settling, audits). Sections start
# with a line "%% NAME".
LOOK_SCRIPT = (
    f"echo '%% services'; {SERVICES_SCRIPT}; "
    "echo '%% mounts'; cat /proc/mounts; "
    "echo '%% heartbeat'; if cl_status hbstatus >/dev/null 2>&1; then "
    f"{heartbeat.VIEW_SCRIPT}; fi; "
    f"echo '%% firewall'; nft list table inet {firewall.TABLE} 2>/dev/null; true"
)


def service_states(node: Node) -> dict[str, bool]:
    """Which of the seed's daemons run on `node` (by their pid files and /proc)."""
    _, out = node.execute(SERVICES_SCRIPT, timeout=10)
    return parse_services(out)


def parse_services(out: str) -> dict[str, bool]:
    names = set(out.split())
    return {k: k in names for k in ("heartbeat", "dnsmasq", "ddclient")}


def srv_mounts(node: Node) -> list[str]:
    """Mount points under /srv inside the node (the replicated disk's, when mounted)."""
    _, out = node.execute("cat /proc/mounts", timeout=10)
    return parse_srv_mounts(out)


def parse_srv_mounts(proc_mounts: str) -> list[str]:
    return [w[1] for w in (ln.split() for ln in proc_mounts.splitlines())
            if len(w) > 2 and w[1].startswith("/srv/")]


def look_at_server(node: Node) -> dict[str, Any]:
    """Services, /srv mounts, heartbeat's view and the firewall listing of one server, from one
    process inside it (LOOK_SCRIPT)."""
    _, out = node.execute(LOOK_SCRIPT, timeout=10)
    return parse_look(out)


def parse_look(out: str) -> dict[str, Any]:
    """LOOK_SCRIPT's output, section by section (pure)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("%% "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    text = {name: "\n".join(lines) for name, lines in sections.items()}
    services = parse_services(text.get("services", ""))
    return {
        "services": services,
        "mounts": parse_srv_mounts(text.get("mounts", "")),
        "heartbeat": (heartbeat.parse_view(text.get("heartbeat", ""))
                      if services["heartbeat"] else {"running": False}),
        "firewall": text.get("firewall", ""),
    }


def _address_on(node: Node, segment: str, version: int) -> str | None:
    for iface in node.spec.interfaces:
        if iface.segment == segment:
            for a in iface.addresses:
                if a.version == version:
                    return str(a.ip)
    return None


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".hapair-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
