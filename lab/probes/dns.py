"""DNS probe: asks real DNS questions at a fixed rate from inside a client namespace and streams
one JSON line per query (:class:`lab.probes.records.DnsSample`).

Run it as its own process inside the client (``node.popen([sys.executable, "-m",
"lab.probes.dns", ...])``): its sockets, routes and ARP cache are then exactly the client's.

Which node answered. The probe reads the client's own neighbour entry for the server address
just before sending and again just after the reply, and maps that MAC to a node with
``--mac-map``. The table is kept current from rtnetlink events (lab.probes.neigh), so a
reading costs one non-blocking recv, and every change of a server's entry is itself recorded
(a ``LogEvent`` with source "neighbour"): the moment the client moved to the other node.
Why this and not the alternatives:

* it needs nothing from the servers: no per-node DNS record (which would live in the replicated
  configuration, the very thing under test), no extra query that could fail on its own;
* it answers the question a client cares about — *whose MAC did my packet go to* — and in a
  switched L2 segment the reply comes from the station the query went to; a VIP held by two
  nodes (split brain) shows up as the MAC the client's ARP cache points at, which is what decides
  who serves it;
* compared with sniffing replies on an AF_PACKET socket it needs no per-packet parsing, and it
  sees TCP exactly like UDP.
The one blind spot: a gratuitous ARP arriving while a query is in flight. Then the two readings
differ and the sample gets ``node = None`` (unknown) rather than a guess; the raw MAC is kept.

Other choices, and why:
* queries are scheduled on a fixed clock (``start + i / rate``), each in its own task, so a
  server that stops answering costs timeouts, not rate: the probe keeps sending during an outage,
  which is what makes outage edges sharp (resolution = 1 / rate);
* ``t`` is taken with ``time.monotonic()`` right before the send, the same clock every other
  process in the lab uses;
* the run is bounded (``--duration``, capped) and stops on SIGTERM/SIGINT after waiting at most
  one timeout for queries in flight, so nothing outlives a scenario;
* ``--os`` mode reads a resolv.conf (by default the client's ``/etc/resolv.conf``, written from
  what the client learned by DHCP/RA) and asks its servers with its search domain, the way the
  client's own resolver would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from lab.probes.neigh import NeighbourTable
from lab.probes.records import ERROR, TIMEOUT, DnsSample, LogEvent, to_json

MAX_DURATION_S = 3600.0
MAX_RATE_HZ = 2000.0


@dataclass(frozen=True)
class Query:
    server: str
    name: str
    qtype: str
    transport: str
    mode: str = "vip"


def parse_mac_map(text: str | None) -> dict[str, str]:
    """``00:15:5d:01:02:07=lsvm1,52:54:00:63:1e:59=lsvm2`` → {mac: node} (MACs lower-cased)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        mac, _, node = item.partition("=")
        if not node:
            raise ValueError(f"bad --mac-map item {item!r}, want MAC=node")
        out[mac.strip().lower()] = node.strip()
    return out


def parse_query(text: str) -> tuple[str, str]:
    """``A:lsvm1.internal.thesteins.org`` → ("A", name); ``PTR:192.168.1.6`` builds the
    in-addr.arpa name; a bare name means A."""
    qtype, sep, name = text.partition(":")
    if not sep or qtype.upper() not in ("A", "AAAA", "PTR", "CNAME", "TXT", "MX", "SOA", "NS"):
        return "A", text
    qtype = qtype.upper()
    if qtype == "PTR" and not name.endswith(".arpa") and not name.endswith(".arpa."):
        name = dns.reversename.from_address(name).to_text()
    return qtype, name


class Rotation:
    """What to ask next: the fixed queries (VIPs) round-robin, interleaved 1:1 with the dynamic
    ones (the OS resolver's servers, DHCP clients' names) when there are any, so 200 client
    names do not starve the VIP checks. None when there is nothing to ask (an OS-only probe
    whose resolv.conf has no server yet): that tick is skipped, not faked."""

    def __init__(self, static: Sequence[Query],
                 dynamic: Sequence[Callable[[], Sequence[Query]]] = ()) -> None:
        self.static, self.dynamic = list(static), list(dynamic)
        self._i = self._j = 0
        self._static_turn = True

    def __call__(self) -> Query | None:
        extra: list[Query] = [q for source in self.dynamic for q in source()]
        if self.static and (self._static_turn or not extra):
            self._static_turn = False
            q = self.static[self._i % len(self.static)]
            self._i += 1
            return q
        self._static_turn = True
        if not extra:
            return None
        q = extra[self._j % len(extra)]
        self._j += 1
        return q


class NamesFromFleet:
    """Hostnames and addresses the DHCP fleet got, read from its JSON-lines output; turned into
    A and PTR queries so the probes check that DHCP clients' names resolve."""

    def __init__(self, path: Path, servers: Sequence[str], domain: str, transport: str) -> None:
        self.path, self.servers, self.domain, self.transport = path, servers, domain, transport
        self._pos = 0
        self._held: dict[str, tuple[str, str]] = {}
        self._queries: list[Query] = []
        self._next_read = 0.0

    def __call__(self) -> Sequence[Query]:
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + 1.0
            self._read()
        return self._queries

    def _read(self) -> None:
        try:
            with self.path.open() as f:
                f.seek(self._pos)
                chunk = f.read()
        except OSError:
            return
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return
        self._pos += len(complete.encode()) + 1
        for line in complete.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") != "dhcp":
                continue
            if rec.get("event") in ("bound", "renewed", "rebound") and rec.get("hostname"):
                self._held[rec["client"]] = (rec["hostname"], rec["address"])
            elif rec.get("event") in ("released", "nak", "expired", "stopped"):
                self._held.pop(rec["client"], None)
        qs: list[Query] = []
        for host, ip in sorted(self._held.values()):
            for server in self.servers:
                qs.append(Query(server, f"{host}.{self.domain}", "A", self.transport))
                qs.append(Query(server, dns.reversename.from_address(ip).to_text(), "PTR",
                                self.transport))
        self._queries = qs


def os_queries(resolv_conf: Path, names: Sequence[str], transports: Sequence[str]) -> list[
    Query
]:
    """The client OS's way: its resolv.conf's servers, its search domain applied to short
    names (like a stub resolver with ndots:1). Empty while resolv.conf names no server."""
    try:
        res = dns.resolver.Resolver(filename=str(resolv_conf), configure=True)
    except (dns.resolver.NoResolverConfiguration, OSError):
        return []
    search = [d.to_text().rstrip(".") for d in res.search] or (
        [res.domain.to_text().rstrip(".")] if res.domain and res.domain.to_text() != "." else []
    )
    out: list[Query] = []
    for server in res.nameservers:
        for text in names:
            qtype, name = parse_query(text)
            if "." not in name.rstrip(".") and search:
                name = f"{name}.{search[0]}"
            for tr in transports:
                out.append(Query(str(server), name, qtype, tr, mode="os"))
    return out


class OsResolver:
    """``os_queries`` re-read every second: the client learns (or loses) its DNS servers by
    DHCP/RA while the probe runs."""

    def __init__(self, path: Path, names: Sequence[str], transports: Sequence[str]) -> None:
        self.path, self.names, self.transports = path, names, transports
        self._next = 0.0
        self._queries: list[Query] = []

    def __call__(self) -> Sequence[Query]:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 1.0
            self._queries = os_queries(self.path, self.names, self.transports)
        return self._queries


async def ask(q: Query, timeout: float) -> tuple[str, tuple[str, ...], str | None]:
    """One real query; returns (rcode or timeout/error, answers as text, error detail)."""
    msg = dns.message.make_query(q.name, dns.rdatatype.from_text(q.qtype))
    try:
        if q.transport == "tcp":
            resp = await dns.asyncquery.tcp(msg, q.server, timeout=timeout)
        else:
            resp = await dns.asyncquery.udp(msg, q.server, timeout=timeout)
    except dns.exception.Timeout:
        return TIMEOUT, (), None
    except (OSError, dns.exception.DNSException, EOFError) as exc:
        return ERROR, (), f"{type(exc).__name__}: {exc}"
    answers = tuple(
        rd.to_text() for rrset in resp.answer for rd in rrset
    )
    return dns.rcode.to_text(resp.rcode()), answers, None


class Probe:
    def __init__(
        self,
        queries: Callable[[], Query | None],
        rate_hz: float,
        timeout_s: float,
        duration_s: float,
        probe_id: str,
        mac_map: dict[str, str],
        out: IO[str],
        neighbours: NeighbourTable | None,
    ) -> None:
        self.queries, self.rate, self.timeout = queries, rate_hz, timeout_s
        self.duration, self.probe_id, self.mac_map = duration_s, probe_id, mac_map
        self.out, self.neigh = out, neighbours
        self.stopping = asyncio.Event()
        self.sent = 0

    async def one(self, q: Query) -> None:
        mac0 = self.neigh.mac(q.server) if self.neigh else None
        t = time.monotonic()
        rcode, answers, err = await ask(q, self.timeout)
        t1 = time.monotonic()
        mac1 = self.neigh.mac(q.server) if self.neigh else None
        got_reply = rcode not in (TIMEOUT, ERROR)
        mac = mac1 or mac0
        node: str | None = None
        if got_reply and mac is not None and (mac0 is None or mac0 == mac1):
            node = self.mac_map.get(mac)
        sample = DnsSample(
            t=t, probe=self.probe_id, server=q.server, name=q.name, qtype=q.qtype,
            transport="tcp" if q.transport == "tcp" else "udp", rcode=rcode,
            latency_s=(t1 - t) if got_reply else None, answers=answers,
            node=node, mac=mac, mode="os" if q.mode == "os" else "vip", error=err,
        )
        if mac0 and mac1 and mac0 != mac1:
            sample = replace(sample, error=f"neighbour changed {mac0} -> {mac1} in flight")
        self.out.write(to_json(sample) + "\n")
        self.out.flush()

    async def run(self) -> int:
        start = time.monotonic()
        end = start + self.duration
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while not self.stopping.is_set():
            due = start + i / self.rate
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                if self.stopping.is_set():
                    break
            i += 1
            q = self.queries()
            if q is None:
                continue
            task = asyncio.create_task(self.one(q))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1.0)
        return self.sent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.probes.dns",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rate", type=float, default=20.0, help="queries per second (default 20)")
    p.add_argument("--server", action="append", default=[], help="server address (repeat)")
    p.add_argument("--query", action="append", default=[],
                   help="TYPE:NAME, e.g. A:lsvm1.internal.thesteins.org, PTR:192.168.1.6 (repeat)")
    p.add_argument("--transport", default="udp", help="udp, tcp or udp,tcp")
    p.add_argument("--timeout", type=float, default=1.0, help="per-query timeout in seconds")
    p.add_argument("--duration", type=float, default=60.0, help=f"seconds (≤ {MAX_DURATION_S:g})")
    p.add_argument("--probe-id", default="probe", help="name of this client in the records")
    p.add_argument("--mac-map", default="", help="MAC=node,MAC=node: who owns which MAC")
    p.add_argument("--os", action="store_true",
                   help="also ask the way the client OS would (servers + search from resolv.conf)")
    p.add_argument("--os-only", action="store_true", help="only the --os queries")
    p.add_argument("--resolv-conf", type=Path, default=Path("/etc/resolv.conf"))
    p.add_argument("--os-name", action="append", default=[],
                   help="names asked in --os mode (short names get the search domain)")
    p.add_argument("--names-from", type=Path, default=None,
                   help="a DHCP fleet's JSON-lines output: also ask its clients' A and PTR")
    p.add_argument("--domain", default="internal.thesteins.org",
                   help="domain of the DHCP clients' names (with --names-from)")
    p.add_argument("--out", default="-", help="output file, or - for stdout")
    p.add_argument("--no-neighbours", action="store_true",
                   help="do not read the neighbour table (node stays unknown)")
    return p


def transports_from(args: argparse.Namespace) -> list[str]:
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    for t in transports:
        if t not in ("udp", "tcp"):
            raise SystemExit(f"unknown transport {t!r}")
    return transports


def queries_from_args(args: argparse.Namespace) -> list[Query]:
    """The fixed queries: every --query to every --server over every transport."""
    qs: list[Query] = []
    if not args.os_only:
        texts = args.query or ["A:lsvm1.internal.thesteins.org"]
        for server in args.server:
            for text in texts:
                qtype, name = parse_query(text)
                for tr in transports_from(args):
                    qs.append(Query(server, name, qtype, tr))
    return qs


async def amain(args: argparse.Namespace, out: IO[str]) -> int:
    static = queries_from_args(args)
    dynamic: list[Callable[[], Sequence[Query]]] = []
    if args.os or args.os_only:
        dynamic.append(OsResolver(args.resolv_conf, args.os_name or ["lsvm1"],
                                  transports_from(args)))
    if args.names_from is not None:
        servers = sorted({q.server for q in static})
        dynamic.append(NamesFromFleet(args.names_from, servers, args.domain,
                                      transports_from(args)[0]))
    if not static and not dynamic:
        raise SystemExit("nothing to ask: give --server (and --query) or --os")
    mac_map = parse_mac_map(args.mac_map)
    watched = {q.server for q in static}

    def arp_changed(t: float, ip: str, mac: str | None) -> None:
        """The client's entry for a server moved (gratuitous ARP, new reply): on the record."""
        if ip in watched or not watched:
            out.write(to_json(LogEvent(
                t=t, node=args.probe_id, source="neighbour", message=f"{ip} is at {mac}",
                fields={"ip": ip, "mac": mac, "node": mac_map.get(mac or "")})) + "\n")
            out.flush()

    neigh = None if args.no_neighbours else NeighbourTable(arp_changed)
    probe = Probe(
        Rotation(static, dynamic), min(args.rate, MAX_RATE_HZ), args.timeout,
        min(args.duration, MAX_DURATION_S), args.probe_id, mac_map, out, neigh,
    )
    loop = asyncio.get_running_loop()
    if neigh is not None:
        neigh.attach(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, probe.stopping.set)
    try:
        return await probe.run()
    finally:
        if neigh is not None:
            neigh.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.timeout <= 0 or args.duration <= 0:
        raise SystemExit("rate, timeout and duration must be positive")
    if args.out == "-":
        asyncio.run(amain(args, sys.stdout))
    else:
        with open(args.out, "a", buffering=1) as f:
            asyncio.run(amain(args, f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
