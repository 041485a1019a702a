"""DHCP fleet: N simulated DHCPv4 clients on macvlans in a client namespace, every transition
streamed as JSON lines (:class:`lab.probes.records.DhcpEvent`).

Run it as its own process inside the client (``python -m lab.probes.dhcp --parent eth0 ...``).
Each client is a pyroute2 ``AsyncDHCPClient`` (raw socket, so it works in a namespace without
any system DHCP client) on its own macvlan with a fixed MAC and hostname, so a dnsmasq lease,
a DNS name and a line in this stream all name the same device.

Adapter, and why it is a subclass. pyroute2 0.9.7 has no public API to force a renew or a
rebind, nor to observe sends and state changes; it has the private ``_renew()``, ``_rebind()``
and ``_send_message()``. :class:`FleetClient` overrides exactly those plus the public
callbacks, and :func:`check_pyroute2` refuses any other pyroute2 version, so an upgrade fails
loudly here instead of silently measuring something else.

Actions, each recorded: bind (DISCOVER, or INIT-REBOOT when a lease is remembered), renew
(REQUEST unicast to the server-identifier and to the MAC that ACKed — after a failover that is
the dead node, which is the point), rebind (broadcast REQUEST), reboot (forget the socket, keep the
lease, INIT-REBOOT: what a device does after its link comes back), release. Timers follow the
lease (pyroute2's T1/T2) unless the scenario forces them: ``--action renew@12`` in seconds after
start, or at any time with signals — SIGUSR1 renew all, SIGUSR2 rebind all, SIGHUP reboot all.

Addresses: a bound client's address is put on its macvlan as a /32 (no prefix route, so the
namespace's other traffic — the DNS probe — keeps using the client's own interface), because a
RENEW's ACK is unicast to that address and the server must be able to ARP for it. The
namespace gets ``arp_ignore=1``/``arp_announce=2`` so each macvlan answers ARP only for its own
address, and IPv6 is off on the macvlans (no SLAAC/DAD noise from 200 interfaces).

Bounded: ``--duration`` (capped), SIGTERM/SIGINT stop early; on exit the clients release (unless
``--no-release``) and every macvlan this process made is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import pyroute2
from pyroute2.dhcp import fsm
from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig, randomized_increasing_backoff
from pyroute2.dhcp.enums.bootp import Flag
from pyroute2.dhcp.leases import Lease

from lab.probes.records import DhcpEvent, to_json

PINNED_PYROUTE2 = "0.9.7"
MAX_CLIENTS = 500
MAX_DURATION_S = 3600.0
ACK_EVENT = {
    fsm.State.REQUESTING: "bound",
    fsm.State.REBOOTING: "bound",
    fsm.State.RENEWING: "renewed",
    fsm.State.REBINDING: "rebound",
}


def check_pyroute2() -> None:
    if pyroute2.__version__ != PINNED_PYROUTE2:
        raise RuntimeError(
            f"lab.probes.dhcp wraps private methods of pyroute2 {PINNED_PYROUTE2}'s "
            f"AsyncDHCPClient; found {pyroute2.__version__}: re-check _renew/_rebind/_send_message"
        )


class MemoryLease(Lease):  # type: ignore[misc]
    """Leases kept in this process, per interface: INIT-REBOOT finds the old one; nothing is
    written to disk (200 clients would litter the working directory)."""

    store: ClassVar[dict[str, Lease]] = {}

    def dump(self) -> None:
        MemoryLease.store[self.interface] = self

    @classmethod
    def load(cls, interface: str) -> Lease | None:
        return cls.store.get(interface)


Emit = Callable[..., None]


class FleetClient(AsyncDHCPClient):  # type: ignore[misc]
    """AsyncDHCPClient that reports every send, state change, OFFER/ACK/NAK and timeout."""

    def __init__(self, config: ClientConfig, emit: Emit, on_bound: Callable[[str, str | None],
                 Any]) -> None:
        super().__init__(config)
        self._emit = emit
        self._on_bound = on_bound
        self._reason = "init"
        self.unicast_replies = True

    # -- observation (overrides) ------------------------------------------------------------
    async def _send_message(self, msg: Any) -> None:
        if self.unicast_replies:
            # ask for unicast replies, as dhclient does: a broadcast OFFER/ACK reaches every
            # macvlan, and 200 clients decoding each other's replies cost O(N²) CPU
            msg.dhcp["flags"] = Flag.UNICAST
        await super()._send_message(msg)
        mtype = msg.message_type.name
        dst = getattr(msg, "ip_dst", None)
        self._emit("send", self.state.name, msg=mtype, reason=self._reason,
                   server_id=dst if dst and dst != "255.255.255.255" else None,
                   server_mac=msg.eth_dst if msg.eth_dst != "ff:ff:ff:ff:ff:ff" else None)

    async def offer_received(self, msg: Any) -> None:
        opts = msg.dhcp["options"]
        self._emit("offer", self.state.name, address=msg.dhcp.get("yiaddr"),
                   server_id=opts.get("server_id"), server_mac=msg.eth_src)
        await super().offer_received(msg)

    async def ack_received(self, msg: Any) -> None:
        request_state = msg.xid.request_state
        old = self.lease.ip if self.lease else None
        await super().ack_received(msg)
        if self.state is not fsm.State.BOUND or self.lease is None:
            return
        self._emit(ACK_EVENT.get(request_state, "bound"), "BOUND", address=self.lease.ip,
                   server_id=self.lease.server_id, server_mac=msg.eth_src,
                   lease_s=msg.dhcp["options"].get("lease_time"))
        await self._on_bound(self.lease.ip, old)

    async def nak_received(self, msg: Any) -> None:
        self._emit("nak", self.state.name, server_id=msg.dhcp["options"].get("server_id"),
                   server_mac=msg.eth_src, address=self.lease.ip if self.lease else None)
        self._reason = "after_nak"
        await super().nak_received(msg)

    async def reset(self, delay: float = 0.0, signal: Any = None) -> None:
        if delay:
            await asyncio.sleep(delay)
            self._emit("timeout", self.state.name, reason=f"no answer in {delay:g}s")
            self._reason = "after_timeout"
        await super().reset(0.0, signal)

    async def _expire_lease(self) -> None:
        self._emit("expired", self.state.name, address=self.lease.ip if self.lease else None)
        await super()._expire_lease()

    # -- forced actions (guarded wrappers of the private timer callbacks) --------------------
    async def renew(self) -> bool:
        if self.state is not fsm.State.BOUND:
            return False
        self._reason = "renew"
        await self._renew()
        return True

    async def rebind(self) -> bool:
        if self.state not in (fsm.State.BOUND, fsm.State.RENEWING):
            return False
        self._reason = "rebind"
        await self._rebind()
        return True


@dataclass
class Member:
    index: int
    ifname: str
    mac: str
    hostname: str
    client: FleetClient | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event | None = None
    ip: str | None = None


class Fleet:
    def __init__(self, args: argparse.Namespace, out: IO[str]) -> None:
        from pyroute2 import AsyncIPRoute

        self.args, self.out = args, out
        self.ipr: Any = AsyncIPRoute()
        self.members: list[Member] = []
        self.made_links: list[str] = []
        self.stopping = asyncio.Event()
        self.parent_index = 0

    # -- records ------------------------------------------------------------------------------
    def emitter(self, m: Member) -> Emit:
        def emit(event: str, state: str, **kw: Any) -> None:
            rec = DhcpEvent(t=time.monotonic(), client=m.mac, event=event, state=state,
                            hostname=m.hostname, probe=self.args.probe_id,
                            **{k: v for k, v in kw.items() if v is not None})
            self.out.write(to_json(rec) + "\n")
            self.out.flush()
        return emit

    # -- links --------------------------------------------------------------------------------
    def _sysctl(self, path: str, value: str) -> None:
        with contextlib.suppress(OSError), open(path, "w") as f:
            f.write(value)

    async def setup_links(self) -> None:
        a = self.args
        idx = await self.ipr.link_lookup(ifname=a.parent)
        if not idx:
            raise SystemExit(f"no interface {a.parent!r} in this namespace")
        self.parent_index = idx[0]
        for key, val in (("arp_ignore", "1"), ("arp_announce", "2")):
            for scope in ("all", "default"):
                self._sysctl(f"/proc/sys/net/ipv4/conf/{scope}/{key}", val)
        self._sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
        for i in range(a.clients):
            ifname = f"{a.ifname_prefix}{i}"
            mac = f"{a.mac_prefix}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
            m = Member(i, ifname, mac, f"{a.hostname_prefix}{i:03d}")
            if await self.ipr.link_lookup(ifname=ifname):
                raise SystemExit(f"{ifname} exists already: another fleet running here?")
            await self.ipr.link("add", ifname=ifname, kind="macvlan", link=self.parent_index,
                                macvlan_mode="bridge", address=mac)
            self.made_links.append(ifname)
            self._sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "1")
            lidx = (await self.ipr.link_lookup(ifname=ifname))[0]
            await self.ipr.link("set", index=lidx, state="up")
            self.members.append(m)

    async def teardown_links(self) -> None:
        for ifname in self.made_links:
            with contextlib.suppress(Exception):
                idx = await self.ipr.link_lookup(ifname=ifname)
                if idx:
                    await self.ipr.link("del", index=idx[0])
        self.made_links.clear()

    async def set_address(self, m: Member, ip: str, old: str | None) -> None:
        if m.ip == ip:
            return
        idx = (await self.ipr.link_lookup(ifname=m.ifname))[0]
        if m.ip:
            with contextlib.suppress(Exception):
                await self.ipr.addr("del", index=idx, address=m.ip, prefixlen=32)
        with contextlib.suppress(Exception):
            await self.ipr.addr("add", index=idx, address=ip, prefixlen=32)
        m.ip = ip

    # -- clients ------------------------------------------------------------------------------
    def config(self, m: Member) -> ClientConfig:
        first = self.args.retransmit_first

        def backoff() -> Any:
            return randomized_increasing_backoff(wait_first=first, wait_max=32.0)

        return ClientConfig(
            interface=m.ifname, lease_type=MemoryLease, hooks=(), handle_signals=False,
            release=not self.args.no_release, host_name=m.hostname, vendor_id="hapair-lab",
            write_pidfile=False, retransmission=backoff,
        )

    async def run_member(self, m: Member, reason: str) -> None:
        """One client's life: enter (INIT or INIT-REBOOT), bootstrap, live until told to stop."""
        emit = self.emitter(m)

        async def on_bound(ip: str, old: str | None) -> None:
            await self.set_address(m, ip, old)

        assert m.stop is not None
        client = FleetClient(self.config(m), emit, on_bound)
        client._reason = reason
        m.client = client
        try:
            async with client:
                emit("start", client.state.name, reason=reason,
                     address=client.lease.ip if client.lease else None)
                await client.bootstrap()
                await m.stop.wait()
                if not self.args.no_release and client.lease and client.state is fsm.State.BOUND:
                    emit("released", "OFF", address=client.lease.ip)
        except Exception as exc:  # one client failing must not take the fleet down
            emit("error", "OFF", reason=f"{type(exc).__name__}: {exc}")
        finally:
            m.client = None

    def start_member(self, m: Member, reason: str) -> None:
        m.stop = asyncio.Event()
        m.task = asyncio.create_task(self.run_member(m, reason))

    async def stop_member(self, m: Member) -> None:
        if m.stop is not None:
            m.stop.set()
        if m.task is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(m.task, timeout=5)
        m.task = None

    async def renew_all(self) -> None:
        await asyncio.gather(*(m.client.renew() for m in self.members if m.client))

    async def rebind_all(self) -> None:
        await asyncio.gather(*(m.client.rebind() for m in self.members if m.client))

    async def reboot_all(self) -> None:
        """INIT-REBOOT: stop each client without RELEASE, start it again with its lease."""
        async def one(m: Member) -> None:
            if m.client is not None:
                m.client.config.release = False
            await self.stop_member(m)
            self.emitter(m)("reboot", "OFF", address=m.ip)
            self.start_member(m, "init_reboot")
        await asyncio.gather(*(one(m) for m in self.members))

    def all_bound(self) -> bool:
        return all(m.client is not None and m.client.state is fsm.State.BOUND
                   for m in self.members)

    async def run(self) -> None:
        a = self.args
        await self.setup_links()
        try:
            for m in self.members:
                self.start_member(m, "init")
                if a.spread > 0:
                    await asyncio.sleep(a.spread)
            await self._live()
        finally:
            await asyncio.gather(*(self.stop_member(m) for m in self.members))
            for m in self.members:
                self.emitter(m)("stopped", "OFF")
            await self.teardown_links()
            self.ipr.close()

    async def _live(self) -> None:
        a = self.args
        start = time.monotonic()
        end = start + min(a.duration, MAX_DURATION_S)
        actions = sorted(parse_action(x) for x in a.action)
        loop = asyncio.get_running_loop()
        pending: list[Callable[[], Any]] = []
        handlers = {signal.SIGUSR1: self.renew_all, signal.SIGUSR2: self.rebind_all,
                    signal.SIGHUP: self.reboot_all}
        for sig, fn in handlers.items():
            loop.add_signal_handler(sig, pending.append, fn)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        while not self.stopping.is_set() and time.monotonic() < end:
            now = time.monotonic() - start
            while actions and actions[0][0] <= now:
                _, name = actions.pop(0)
                pending.append({"renew": self.renew_all, "rebind": self.rebind_all,
                                "reboot": self.reboot_all}[name])
            while pending:
                await pending.pop(0)()
            if a.exit_when_bound and self.all_bound():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.05)


def parse_action(text: str) -> tuple[float, str]:
    """``renew@12.5`` → (12.5, "renew")."""
    name, _, at = text.partition("@")
    if name not in ("renew", "rebind", "reboot") or not at:
        raise argparse.ArgumentTypeError(f"bad action {text!r}: want renew|rebind|reboot@SECONDS")
    return float(at), name


def refuse_root_namespace(forbid: Sequence[str]) -> None:
    """The fleet adds links: refuse to run in a namespace the caller named as forbidden."""
    mine = os.stat("/proc/self/ns/net").st_ino
    for path in forbid:
        try:
            if os.stat(path).st_ino == mine:
                raise SystemExit(f"refusing to run in the network namespace of {path}")
        except PermissionError:
            continue
        except FileNotFoundError:
            continue


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.probes.dhcp",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--parent", default="eth0", help="the client's interface to hang macvlans on")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--probe-id", default="fleet")
    p.add_argument("--mac-prefix", default="02:10:00:00", help="first 4 bytes of client MACs")
    p.add_argument("--hostname-prefix", default="fleet")
    p.add_argument("--ifname-prefix", default="dhc")
    p.add_argument("--spread", type=float, default=0.005, help="seconds between client starts")
    p.add_argument("--retransmit-first", type=float, default=4.0,
                   help="first retransmission delay (pyroute2 backoff, doubles up to 32 s)")
    p.add_argument("--action", action="append", default=[],
                   help="renew@S, rebind@S, reboot@S: forced, S seconds after start (repeat)")
    p.add_argument("--no-release", action="store_true", help="do not RELEASE on exit")
    p.add_argument("--exit-when-bound", action="store_true", help="stop once all are bound")
    p.add_argument("--forbid-netns", action="append", default=[],
                   help="refuse to run if this process is in that namespace (repeat)")
    p.add_argument("--expect-netns", type=int, default=None, metavar="INODE",
                   help="refuse to run unless this process's network namespace has this inode "
                        "(the caller's check that the fleet landed in the client it meant)")
    p.add_argument("--out", default="-")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    check_pyroute2()
    args = build_parser().parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS}")
    if len(args.mac_prefix.split(":")) != 4:
        raise SystemExit("--mac-prefix wants 4 bytes, e.g. 02:10:00:00")
    refuse_root_namespace(args.forbid_netns)
    mine = os.stat("/proc/self/ns/net").st_ino
    if args.expect_netns is not None and mine != args.expect_netns:
        raise SystemExit(f"network namespace {mine} is not the expected {args.expect_netns}")
    for a in args.action:
        parse_action(a)

    async def go(out: IO[str]) -> None:
        await Fleet(args, out).run()

    if args.out == "-":
        asyncio.run(go(sys.stdout))
    else:
        with Path(args.out).open("a", buffering=1) as f:
            asyncio.run(go(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
