"""A throwaway L2 segment for testing and benchmarking the probes against real daemons, apart
from the lab runtime: a switch namespace with a bridge, host namespaces plugged into it by veths.

Everything lives in network namespaces created here with ``unshare --net`` (each held by a
``sleep`` process whose PID we own); links are made with pyroute2 *inside* those namespaces,
and a guard refuses to touch any namespace that is the root's. Tear-down kills our own PIDs
(daemons first, then the holders), which deletes the namespaces and every veth in them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

# the namespace this test process started in is "the root" as far as we are concerned
ROOT_NS_INODE = os.stat("/proc/self/ns/net").st_ino


def can_run() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@dataclass
class Netns:
    name: str
    holder: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.holder.pid

    @property
    def path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def check(self) -> None:
        """Refuse to act unless this is a namespace of our own, not the root's."""
        ino = os.stat(self.path).st_ino
        if ino in (ROOT_NS_INODE, os.stat("/proc/self/ns/net").st_ino):
            raise RuntimeError(f"{self.name}: {self.path} is the root namespace, refusing")

    def ipr(self) -> Any:
        self.check()
        return IPRoute(netns=self.path, flags=0)

    def argv(self, cmd: Sequence[str]) -> list[str]:
        self.check()
        return ["nsenter", f"--net={self.path}", "--", *cmd]

    def run(self, cmd: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(cmd), capture_output=True, text=True, timeout=timeout,
                              check=False)


def _new_netns(name: str, ttl_s: int) -> Netns:
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", str(ttl_s)])
    ns = Netns(name, holder)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.stat(ns.path).st_ino != ROOT_NS_INODE and os.readlink(
                f"/proc/{holder.pid}/exe"
            ).endswith("sleep"):
                return ns
        except OSError:
            pass
        time.sleep(0.01)
    holder.kill()
    holder.wait()
    raise RuntimeError("unshare did not make a namespace")


@dataclass
class Segment:
    """One bridge ("the VLAN") and hosts on it, each with ``eth0`` and a fixed MAC."""

    ttl_s: int = 300
    switch: Netns | None = None
    hosts: dict[str, Netns] = field(default_factory=dict)
    daemons: list[subprocess.Popen[Any]] = field(default_factory=list)

    def __enter__(self) -> Segment:
        self.switch = _new_netns("switch", self.ttl_s)
        with self.switch.ipr() as ipr:
            ipr.link("add", ifname="br0", kind="bridge", br_forward_delay=0)
            idx = ipr.link_lookup(ifname="br0")[0]
            ipr.link("set", index=idx, state="up")
        return self

    def add_host(self, name: str, mac: str, addrs: Sequence[str] = ()) -> Netns:
        assert self.switch is not None
        ns = _new_netns(name, self.ttl_s)
        port = f"p-{name}"[:15]
        with self.switch.ipr() as ipr:
            ipr.link("add", ifname=port, kind="veth", peer="eth0")
            peer = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=peer, net_ns_pid=ns.pid)
            pidx = ipr.link_lookup(ifname=port)[0]
            br = ipr.link_lookup(ifname="br0")[0]
            ipr.link("set", index=pidx, master=br, state="up")
        with ns.ipr() as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, address=mac)
            ipr.link("set", index=idx, state="up")
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            for a in addrs:
                addr, _, plen = a.partition("/")
                ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 24))
        self.hosts[name] = ns
        return ns

    def start(self, host: str, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(self.hosts[host].argv(cmd), **kw)
        self.daemons.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *_: object) -> None:
        for p in reversed(self.daemons):
            self.stop(p)
        for ns in [*self.hosts.values(), *([self.switch] if self.switch else [])]:
            ns.holder.kill()
            ns.holder.wait()


def dnsmasq_argv(workdir: Path, listen: str, extra: Sequence[str] = ()) -> list[str]:
    """A dnsmasq serving a couple of the seed's names and DHCP on the sandbox's 10.99.0.0/24."""
    return [
        "dnsmasq", "--keep-in-foreground", "--user=root", "--group=root",
        "--conf-file=/dev/null", "--pid-file=", "--no-resolv", "--no-hosts",
        f"--listen-address={listen}", "--bind-dynamic",
        "--domain=internal.thesteins.org", "--local=/internal.thesteins.org/",
        "--host-record=lsvm1.internal.thesteins.org,10.99.0.6",
        "--host-record=lsvm2.internal.thesteins.org,10.99.0.7",
        "--dhcp-range=10.99.0.21,10.99.0.234,2m", "--dhcp-authoritative", "--no-ping",
        f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}",
        f"--log-facility={workdir / 'dnsmasq.log'}", "--log-dhcp",
        "--dhcp-option=option:dns-server,10.99.0.4",
        *extra,
    ]
