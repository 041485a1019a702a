"""The ``probes`` fixture's object: start probes in client nodes, record, build the timeline.

Proposed use in a scenario (the pytest plugin makes one ``Probes`` per test)::

    with probes.dns(rate_hz=20), probes.dhcp(clients=20):
        lab["lsvm2"].crash()
        probes.renew()                  # force the fleet's RENEW now (SIGUSR1)
        ...
    m = probes.metrics()                # pure checks over the recorded timeline
    probes.write_artifacts()            # timeline.jsonl, metrics.json, timeline.png, streams

Why a context manager per probe kind: the measuring window is visible in the scenario's text,
and the probes are stopped (SIGTERM to the PID we started, then SIGKILL) however the block is
left. Each probe also carries its own ``--duration`` bound, so even a killed pytest leaves
nothing running for long. Streams are written by the host side (the probe writes to stdout,
which is a host file), so nothing depends on what the node's mount namespace can see.

While a DNS probe runs, a thread samples VIP holders every ``vip_interval_s`` from the servers'
kernels and records changes (:class:`VipEvent`); lab events (crash, freeze, cable pulls)
become fault windows when the timeline is built.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from lab import checks, report
from lab.probes import labview
from lab.probes.live import LiveView
from lab.probes.records import FaultEvent, LeaseSnapshot, Record, VipEvent
from lab.timeline import Header, Timeline, build
from lab.wait import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parents[2]
DEFAULT_QUERIES = (
    "A:lsvm1.internal.thesteins.org",
    "A:lsvm2.internal.thesteins.org",
    "PTR:192.168.1.6",
    "CNAME:smtp.internal.thesteins.org",
)
LEASE_FILE = "srv/drbd0/dnsmasq/dnsmasq.leases"


def probe_pid(popen: subprocess.Popen[Any]) -> int:
    """The probe's own PID: ``node.popen`` runs ``nsenter --pid``, which forks; signals must
    go to the child (nsenter does not forward SIGUSR1/SIGHUP)."""
    path = Path(f"/proc/{popen.pid}/task/{popen.pid}/children")

    def child() -> list[str] | None:
        """nsenter's children, or None once nsenter itself is gone (no child will come)."""
        if popen.poll() is not None:
            return None
        return path.read_text().split()
    with contextlib.suppress(WaitTimeout):
        kids = wait_for(child, until=lambda k: k is None or bool(k), timeout=5,
                        interval=0.005, errors=(FileNotFoundError,), what="the probe's PID")
        if kids:
            return int(kids[0])
    return popen.pid


def stop_processes(popens: Sequence[subprocess.Popen[Any]], grace_s: float = 5.0) -> None:
    """SIGTERM to every probe at once (so parallel probes stop at the same moment; each stops
    cleanly: releases leases, deletes macvlans), then SIGKILL to any nsenter we started that
    is still there after ``grace_s``."""
    for popen in popens:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(probe_pid(popen), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for popen in popens:
        try:
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def stop_process(popen: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
    stop_processes([popen], grace_s)


class Probes:
    def __init__(self, lab: Any, outdir: Path, run_id: str = "run", seed: int | None = None,
                 **meta: Any) -> None:
        self.lab = lab
        self.outdir = outdir
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.header = Header.start(run_id, seed=seed, lab=getattr(lab, "name", None), **meta)
        self.streams: list[Path] = []
        self.records: list[Record] = []
        self.fleets: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._n = 0
        self.margin_s = 2.0
        self.live = LiveView()
        self.vips: list[str] = []  # every address a DNS probe of this run asks
        self.fleet_size = 0  # fleet clients started so far

    # -- starting probes ------------------------------------------------------------------
    def _popen(self, node: str, argv: Sequence[str], out: Path) -> subprocess.Popen[Any]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8"}
        f: IO[bytes] = out.open("ab")
        e: IO[bytes] = out.with_suffix(".stderr").open("ab")
        try:
            proc: subprocess.Popen[Any] = self.lab[node].popen(
                list(argv), stdout=f, stderr=e, env=env)
            return proc
        finally:
            f.close()
            e.close()

    def _stream(self, kind: str, node: str) -> Path:
        self._n += 1
        path = self.outdir / f"{kind}-{node}-{self._n}.jsonl"
        self.streams.append(path)
        return path

    @contextlib.contextmanager
    def dns(self, rate_hz: float = 20.0, clients: Sequence[str] = ("c1",),
            queries: Sequence[str] = DEFAULT_QUERIES, transport: str = "udp",
            timeout_s: float = 1.0, os_mode: bool = True, fleet_names: bool = True,
            max_duration_s: float = 900.0, vip_interval_s: float = 0.1,
            servers: Sequence[str] | None = None) -> Iterator[None]:
        """DNS probes in each client, asking its segment's VIPs (and, with ``os_mode``, the
        way its OS would); VIP holders sampled meanwhile. ``rate_hz`` is per VIP: a client
        with two VIPs sends 2 × rate_hz, so every VIP's outage edges have 1/rate_hz
        resolution whatever the query mix."""
        procs: list[subprocess.Popen[Any]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch_vips, args=(stop, vip_interval_s),
                                   daemon=True)
        try:
            watcher.start()
            for client in clients:
                segment = labview.client_segment(self.lab, client)
                targets = (list(servers) if servers is not None
                           else labview.vips_for_segment(self.lab, segment))
                self.vips += [t for t in targets if t not in self.vips]
                argv = [self.lab[client].python, "-m", "lab.probes.dns",
                        "--rate", str(rate_hz * max(1, len(targets)) * (2 if os_mode else 1)),
                        "--timeout", str(timeout_s), "--duration", str(max_duration_s),
                        "--probe-id", client, "--mac-map", labview.mac_map_arg(self.lab),
                        "--transport", transport, "--out", "-"]
                for vip in targets:
                    argv += ["--server", vip]
                for q in queries:
                    argv += ["--query", q]
                if os_mode:
                    argv += ["--os", "--os-name", "lsvm1"]
                if fleet_names:
                    fleet = [p for p in self.streams if p.name.startswith(f"dhcp-{client}-")]
                    if fleet:
                        # the node's mount namespace is a copy of the host's: the stream's host
                        # path is visible there unless it lies in a node-private dir (/tmp)
                        argv += ["--names-from", str(fleet[-1].resolve())]
                procs.append(self._popen(client, argv, self._stream("dns", client)))
            yield
        finally:
            stop_processes(procs)
            stop.set()
            watcher.join(timeout=5)

    @contextlib.contextmanager
    def dhcp(self, clients: int = 20, node: str = "c1", actions: Sequence[str] = (),
             retransmit_first_s: float = 4.0, release: bool = True,
             max_duration_s: float = 900.0) -> Iterator[subprocess.Popen[Any]]:
        """A DHCP fleet of ``clients`` on macvlans in ``node``; ``actions`` like
        ``("renew@10",)``; :meth:`renew`/:meth:`rebind`/:meth:`reboot` force them any time."""
        tag = f"{node[:2]}{self._n % 10}"
        argv = [self.lab[node].python, "-m", "lab.probes.dhcp", "--clients", str(clients),
                "--parent", labview.client_iface(self.lab, node), "--probe-id", node,
                "--duration", str(max_duration_s), "--retransmit-first", str(retransmit_first_s),
                "--hostname-prefix", f"{node}fleet", "--ifname-prefix", f"f{tag}-",
                "--mac-prefix", f"02:1f:{sum(map(ord, node)) & 0xFF:02x}:{self._n & 0xFF:02x}",
                "--expect-netns", str(os.stat(self.lab[node].netns_path).st_ino),
                "--out", "-"]
        for a in actions:
            argv += ["--action", a]
        if not release:
            argv.append("--no-release")
        proc = self._popen(node, argv, self._stream("dhcp", node))
        self.fleets.append(proc)
        self.fleet_size += clients
        try:
            yield proc
        finally:
            # the lease file as the fleet leaves it, before its RELEASEs empty it
            with contextlib.suppress(Exception):
                self.snapshot_leases("end")
            stop_process(proc, grace_s=10.0)
            self.fleets.remove(proc)

    def _signal_fleets(self, sig: signal.Signals) -> None:
        for p in self.fleets:
            if p.poll() is None:
                os.kill(probe_pid(p), sig)

    def renew(self) -> None:
        """Every fleet client RENEWs now (unicast to its server-identifier)."""
        self._signal_fleets(signal.SIGUSR1)

    def rebind(self) -> None:
        self._signal_fleets(signal.SIGUSR2)

    def reboot(self, real_clients: bool = True) -> None:
        """Every fleet client does INIT-REBOOT (asks for its old address); with
        `real_clients`, so does each client node's own isc dhclient (restarted without a
        release), so the fleet's outcome can be compared with a real OS client's."""
        self._signal_fleets(signal.SIGHUP)
        if real_clients and getattr(self.lab.stack, "name", "none") == "seed":
            from lab.services import dhclient
            for node in self.lab:
                if node.spec.role == "client" and node.state == "running":
                    dhcp = [i for i in node.spec.interfaces if i.dhcp]
                    if dhcp:
                        dhclient.restart(node, dhcp[0].name)

    # -- extra records ----------------------------------------------------------------------
    def _add(self, rec: Record) -> None:
        with self._lock:
            self.records.append(rec)

    def _watch_vips(self, stop: threading.Event, interval_s: float) -> None:
        last: dict[str, tuple[str, ...]] = {}
        while not stop.is_set():
            t = time.monotonic()
            with contextlib.suppress(Exception):
                for vip, holders in labview.vip_holders(self.lab).items():
                    if last.get(vip) != holders:
                        last[vip] = holders
                        self._add(VipEvent(t=t, vip=vip, holders=holders))
            stop.wait(interval_s)

    @contextlib.contextmanager
    def fault(self, fault: str, targets: Sequence[str] = (), detail: str | None = None
              ) -> Iterator[None]:
        """Mark a fault window by hand (for faults the lab does not log itself)."""
        self._n += 1
        fid = f"{fault}-{self._n}"
        self._add(FaultEvent(time.monotonic(), "start", fault, fid, tuple(targets), detail))
        try:
            yield
        finally:
            self._add(FaultEvent(time.monotonic(), "end", fault, fid, tuple(targets), detail))

    def snapshot_leases(self, label: str, node: str | None = None) -> LeaseSnapshot | None:
        """The replicated lease file as the active node sees it (``node`` or the holder of the
        first VIP)."""
        if node is None:
            holders = labview.vip_holders(self.lab)
            first = next(iter(holders.values()), ())
            if not first:
                return None
            node = first[0]
        try:
            text = (Path(self.lab[node].root) / LEASE_FILE).read_text()
        except OSError:
            return None
        entries = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 4 and "." in parts[2]:
                entries.append((parts[1].lower(), parts[2], parts[3]))
        snap = LeaseSnapshot(time.monotonic(), node, label, tuple(entries))
        self._add(snap)
        return snap

    # -- waiting on what clients see ----------------------------------------------------------
    def view(self) -> LiveView:
        """What the probes have recorded so far (read incrementally, see lab.probes.live)."""
        return self.live.refresh(self.streams)

    def last_fault(self) -> FaultEvent:
        """The latest fault started during this run (lab events and hand-marked windows)."""
        start = self.header.clock.start.mono
        with self._lock:
            marked = [r for r in self.records if isinstance(r, FaultEvent)]
        faults = [f for f in (*labview.faults_from_lab_events(self.lab.events()), *marked)
                  if f.phase == "start" and f.t >= start]
        if not faults:
            raise AssertionError("no fault has started since the probes began")
        return max(faults, key=lambda f: f.t)

    def wait_bound(self, n: int | None = None, timeout: float = 60.0) -> int:
        """Wait until `n` fleet clients (default: all started) hold a lease; then record the
        lease file as "bound", the reference that `leases_lost` compares the end with."""
        __tracebackhide__ = True
        want = self.fleet_size if n is None else n
        got = wait_for(lambda: len(self.view().bound), until=lambda k: k >= want,
                       timeout=timeout, what=f"{want} fleet clients bound")
        self.snapshot_leases("bound")
        return got

    def wait_takeover(self, vip: str | None = None, timeout: float = 120.0) -> float:
        """Wait until clients get good answers again on `vip` (default: every VIP probed)
        from a node the latest fault did not hit; return the slowest takeover in seconds."""
        __tracebackhide__ = True
        fault = self.last_fault()
        vips = [vip] if vip else list(self.vips)
        if not vips:
            raise AssertionError("wait_takeover needs a running DNS probe (probes.dns())")
        done = wait_for(lambda: self.view().takeover_s(fault, vips),
                        until=lambda per_vip: all(v is not None for v in per_vip.values()),
                        timeout=timeout, what=f"a takeover of {', '.join(vips)} after "
                                              f"{fault.fault_id}")
        return max(v for v in done.values() if v is not None)

    def wait_served_by(self, node: Any, vip: str | None = None, timeout: float = 120.0) -> None:
        """Wait until the latest good answer on `vip` (default: every VIP probed) comes from
        `node` (a Node or its name)."""
        __tracebackhide__ = True
        name = getattr(node, "name", node)
        vips = [vip] if vip else list(self.vips)
        wait_for(lambda: {v: self.view().last_answerer(v) for v in vips},
                 until=lambda last: all(n == name for n in last.values()), timeout=timeout,
                 what=f"{name} to answer on {', '.join(vips)}")

    def confirm_leases(self, timeout: float = 60.0, renew_grace_s: float = 6.0
                       ) -> checks.LeaseSurvival | None:
        """Make every fleet client that was bound when the latest fault started ask again,
        so lease survival is measured rather than assumed: RENEW first (unicast to the server
        that granted the lease, finding F9), then REBIND (broadcast) for those the RENEW did
        not answer within `renew_grace_s`. Returns the survival as measured when every such
        client had an answer, or at `timeout` (those still unanswered are named in it)."""
        fault = self.last_fault()
        before = checks.bound_at(self.view().dhcp, fault.t)

        def missing() -> set[str]:
            return set(before) - set(self.view().acked_since(fault.t))
        self.renew()
        with contextlib.suppress(WaitTimeout):
            wait_for(missing, until=lambda left: not left, timeout=renew_grace_s)
        if missing():
            self.rebind()
            with contextlib.suppress(WaitTimeout):
                wait_for(missing, until=lambda left: not left,
                         timeout=max(0.0, timeout - renew_grace_s))
        self.snapshot_leases("confirmed")
        return checks.lease_survival(self.view().dhcp, self.view().samples, fault)

    def window(self, seconds: float) -> None:
        """A measuring window: the probes run on for `seconds` (a named pause, not a wait for
        a condition)."""
        time.sleep(seconds)

    # -- results ----------------------------------------------------------------------------
    def timeline(self) -> Timeline:
        header = self.header.finish()
        faults = labview.faults_from_lab_events(self.lab.events())
        with self._lock:
            extra = list(self.records)
        tl = build(header, jsonl=self.streams, logs=labview.node_logs(self.lab),
                   records=[*faults, *extra])
        # node logs and lab events go back to the lab's start: keep this run's window only
        lo = header.clock.start.mono - self.margin_s
        hi = (header.clock.end.mono if header.clock.end else time.monotonic()) + self.margin_s
        return Timeline(header, tuple(r for r in tl.records if lo <= r.t <= hi))

    def metrics(self, vip: str | None = None, fault_id: str | None = None) -> checks.Metrics:
        return checks.metrics(self.timeline(), vip=vip, fault_id=fault_id)

    def write_artifacts(self, title: str | None = None) -> checks.Metrics:
        return report.write_artifacts(self.outdir, self.timeline(), title=title)
