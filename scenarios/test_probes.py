"""The instrument (probes, timeline, checks) on the real pair.

1. steady state: 20 s of DNS at 20 Hz per VIP and 20 DHCP clients → no failed query, every
   client bound, no takeover, artifacts written and the plot drawn;
2. ground truth: a crash of the primary, captured on the VLAN bridge in the switch namespace;
   the probes' takeover and the first reply from the new node on the wire agree within 100 ms;
5. ``lab measure --json`` on a running lab returns the metrics (``lab watch``'s picture is
   tested on recorded states in tests/probes/test_watch.py).

``seed_lab``, ``probes`` and the audits after each test come from the pytest plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest

from lab import report
from lab.lab import Lab
from lab.probes import labview
from lab.probes.clock import ClockMap, sample_pair
from lab.probes.fixture import Probes, stop_process
from lab.probes.pcap import first_reply_from
from lab.probes.records import DnsSample, LogEvent
from lab.timeline import read_jsonl
from lab.wait import WaitTimeout, wait_for

pytestmark = [pytest.mark.lab]
VIP4 = "192.168.1.4"
REPO = Path(__file__).resolve().parents[1]


def colour_present(img: np.ndarray[Any, Any], hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(img[..., :3] - rgb).max(axis=-1) < 0.06).any())


def test_steady_state(seed_lab: Lab, probes: Probes) -> None:
    holder = seed_lab.active().name
    with probes.dhcp(clients=20):
        probes.wait_bound()
        with probes.dns(rate_hz=20):
            probes.window(20)
    m = probes.write_artifacts(title="steady state")
    assert m.queries >= 0.9 * 20 * 20 * 2  # two VIPs on c1's segment at 20 Hz each, 20 s
    assert m.failed == 0, m.failed_by_kind
    assert m.dhcp_clients == 20 and m.dhcp_bound_at_end == 20
    assert m.takeover_s is None and m.fault is None
    assert m.duplicate_ips == 0
    assert set(m.answered_by[VIP4]) == {holder}
    for name in ("metrics.json", "timeline.jsonl", "timeline.png"):
        assert (probes.outdir / name).stat().st_size > 0
    img = mpimg.imread(probes.outdir / "timeline.png")
    assert colour_present(img, report.NODE_COLOURS[holder])


@contextmanager
def dns_capture_on_vlan1(lab: Lab, cap: Path) -> Iterator[None]:
    """tcpdump of DNS on the vlan1 bridge in the switch namespace: the wire's ground truth,
    listening before the block starts and stopped after it."""
    tcpdump = subprocess.Popen(
        ["nsenter", f"--net={lab.switch_netns}", "--", "tcpdump", "-i", "vlan1", "-U",
         "-s", "0", "-w", str(cap), "port 53"], stderr=subprocess.PIPE, text=True)
    try:
        assert tcpdump.stderr is not None
        assert "listening on" in tcpdump.stderr.readline()
        yield
    finally:
        stop_process(tcpdump)


@pytest.mark.audit(skip=["drbd"])  # the crashed primary stays down: the survivor is alone
def test_takeover_agrees_with_capture_on_the_bridge(seed_lab: Lab, probes: Probes) -> None:
    primary, survivor = seed_lab.active().name, seed_lab.standby().name
    survivor_macs = {mac for mac, node in labview.server_macs(seed_lab).items()
                     if node == survivor}
    cap = probes.outdir / "vlan1.pcap"
    clock = ClockMap(sample_pair())
    with dns_capture_on_vlan1(seed_lab, cap), \
            probes.dns(rate_hz=50, clients=("c1",), os_mode=False, timeout_s=0.5):
        probes.window(2.0)
        seed_lab[primary].crash()
        # heartbeat takes the group in order: disk, IPv4 VIPs, IPv6 VIPs (the stock agent
        # blocks seconds per address), then dnsmasq -- wait for the survivor's answers
        with suppress(WaitTimeout):  # no takeover is reported below, with the log
            probes.wait_served_by(survivor, vip=VIP4, timeout=120)
        probes.window(2.0)
    tl = probes.timeline()
    m = probes.metrics(vip=VIP4)
    assert m.fault is not None
    if m.takeover_s is None:
        bad = [e.message for e in tl.of(LogEvent) if e.node == survivor
               and (e.level or "") in ("error", "crit")][:5]
        pytest.fail(f"no takeover: {survivor} never answered DNS on {VIP4} within 120 s of "
                    f"the crash; its log says {bad} (the instrument cannot be compared with "
                    "the wire without a takeover)")
    fault_t = next(f.t for f in tl.records if getattr(f, "fault_id", None) == m.fault)
    wire = first_reply_from(cap, VIP4, survivor_macs, after_wall=clock.to_wall(fault_t))
    assert wire is not None, "no reply from the survivor on the wire"
    wire_takeover = clock.to_mono(wire.wall) - fault_t
    with (probes.outdir / "ground_truth.json").open("w") as f:
        json.dump({"takeover_probe_s": m.takeover_s, "takeover_wire_s": wire_takeover}, f)
    assert abs(m.takeover_s - wire_takeover) < 0.1, (m.takeover_s, wire_takeover)


def fresh_dir(path: Path) -> Path:
    """An empty artifact directory: a lab's name can come back in a later run, and streams
    of an earlier run must not be counted as this one's."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def test_lab_measure_json(seed_lab: Lab, tmp_path: Path) -> None:
    out = fresh_dir(REPO / "results" / f"measure-test-{seed_lab.name}")
    # the seed's dnsmasq pings before each new client's first offer, one client every ~3 s
    # (F13): 5 new clients need ~15 s there, 5 s where the profile sets no-ping
    duration = 20 if seed_lab.profile == "seed" else 5
    r = subprocess.run(
        # c1 only: the guest VLAN's OS resolver is the router (the seed's choice) and g1 has no
        # IPv6 route to the vlan3 VIP -- findings measured elsewhere, not this test's subject
        [sys.executable, "-m", "lab.cli", "measure", "--name", seed_lab.name, "--clients", "c1",
         "--duration", str(duration), "--dhcp-clients", "5", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["queries"] > 0 and m["failed"] == 0, m
    assert m["dhcp_bound_at_end"] == 5
    assert (out / "timeline.png").exists()
    samples = [s for p in out.glob("dns-*.jsonl") for s in read_jsonl(p)
               if isinstance(s, DnsSample)]
    # the headline counts the VIPs asked directly; c1's own resolver path is reported apart
    vip = [s for s in samples if s.mode == "vip"]
    own = m["resolver_paths"]["c1"]
    assert len(vip) == m["queries"]
    assert len(samples) - len(vip) == sum(path["queries"] for path in own.values()) > 0


# -- the instrument on the real lab runtime, without the seed's services -------------------
# The seed stack is not needed to check the instrument: a bare lab (real nodes, switch,
# bridges, crash) plus a dnsmasq started by the test and a VIP moved by hand the way
# heartbeat's IPaddr does it (address + gratuitous ARP). These run whatever the state of the
# services, so the measuring chain is proven on the lab's own fabric.
DNSMASQ = [
    "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
    "--user=root", "--group=root", "--no-resolv", "--no-hosts", "--bind-dynamic",
    "--domain=internal.thesteins.org", "--local=/internal.thesteins.org/",
    "--host-record=lsvm1.internal.thesteins.org,192.168.1.6",
    "--host-record=lsvm2.internal.thesteins.org,192.168.1.7",
    "--cname=smtp.internal.thesteins.org,lsvm1.internal.thesteins.org",
    "--log-facility=/var/log/dnsmasq.log",
]
DHCP = ["--dhcp-range=192.168.1.21,192.168.1.234,12h", "--dhcp-authoritative", "--no-ping",
        "--dhcp-leasefile=/tmp/dnsmasq.leases", "--log-dhcp"]


@pytest.fixture
def bare_pair(lab_factory: Callable[..., Lab]) -> Iterator[Lab]:
    """A bare lab where lsvm2 serves DNS+DHCP on the VIP 192.168.1.4, lsvm1 DNS only."""
    lab = lab_factory(stack="none")
    # the VIP first: an address that appears while dnsmasq is still starting can fall between
    # its first look at the interfaces and its netlink watch (--bind-dynamic), and then it
    # never listens there (one soak run: no answer on the VIP for 20 s)
    lab["lsvm2"].succeed("ip addr add 192.168.1.4/24 dev enp2s1")
    procs = [lab["lsvm2"].popen([*DNSMASQ, *DHCP], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL),
             lab["lsvm1"].popen(DNSMASQ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    lab["c1"].wait_until_succeeds(
        f"PYTHONPATH={REPO} {lab['c1'].python} -m lab.probes.dns --server {VIP4} --rate 10 "
        "--duration 0.3 --timeout 0.2 --no-neighbours | grep -q NOERROR", timeout=20)
    yield lab
    for p in procs:
        stop_process(p)


@pytest.fixture
def bare_probes(bare_pair: Lab, request: pytest.FixtureRequest) -> Iterator[Probes]:
    from lab.pytest_plugin import artifact_dir

    p = Probes(bare_pair, artifact_dir(request).resolve() / "probes",
               run_id=request.node.nodeid)
    yield p
    p.write_artifacts(title=request.node.nodeid)


def take_vip(lab: Lab, node: str) -> None:
    """What heartbeat's IPaddr does: add the address, then gratuitous ARPs."""
    lab[node].succeed("ip addr add 192.168.1.4/24 dev enp2s1")
    lab[node].succeed("/usr/libexec/heartbeat/send_arp -i 100 -r 5 enp2s1 192.168.1.4 auto "
                      "192.168.1.4 ffffffffffff")


def test_instrument_steady_state_on_bare_lab(bare_pair: Lab, bare_probes: Probes) -> None:
    with bare_probes.dhcp(clients=20):
        bare_probes.wait_bound()
        with bare_probes.dns(rate_hz=20, servers=[VIP4], os_mode=False):
            bare_probes.window(20)
    m = bare_probes.write_artifacts(title="steady state (bare lab)")
    assert m.queries >= 0.9 * 20 * 20 and m.failed == 0, m.failed_by_kind  # probe start-up
    assert m.answered_by[VIP4] == {"lsvm2": m.queries}
    assert m.dhcp_clients == 20 and m.dhcp_bound_at_end == 20 and m.duplicate_ips == 0
    assert m.takeover_s is None
    img = mpimg.imread(bare_probes.outdir / "timeline.png")
    assert colour_present(img, report.NODE_COLOURS["lsvm2"])
    assert not colour_present(img[int(img.shape[0] * 0.25):], report.FAIL)


def test_instrument_takeover_agrees_with_capture_on_bare_lab(bare_pair: Lab,
                                                             bare_probes: Probes) -> None:
    lab = bare_pair
    cap = bare_probes.outdir / "vlan1.pcap"
    clock = ClockMap(sample_pair())
    with dns_capture_on_vlan1(lab, cap), \
            bare_probes.dns(rate_hz=50, servers=[VIP4], os_mode=False, timeout_s=0.5):
        bare_probes.window(2.0)
        lab["lsvm2"].crash()
        bare_probes.window(1.0)  # "deadtime"
        take_vip(lab, "lsvm1")
        bare_probes.window(2.0)
    tl = bare_probes.timeline()
    m = bare_probes.metrics(vip=VIP4)
    assert m.fault is not None and m.takeover_s is not None, m.to_dict()
    fault_t = next(f.t for f in tl.records if getattr(f, "fault_id", None) == m.fault)
    lsvm1_macs = {mac for mac, n in labview.server_macs(lab).items() if n == "lsvm1"}
    wire = first_reply_from(cap, VIP4, lsvm1_macs, after_wall=clock.to_wall(fault_t))
    assert wire is not None, "no reply from lsvm1 on the wire"
    wire_takeover = clock.to_mono(wire.wall) - fault_t
    (bare_probes.outdir / "ground_truth.json").write_text(json.dumps(
        {"takeover_probe_s": m.takeover_s, "takeover_wire_s": wire_takeover}))
    assert abs(m.takeover_s - wire_takeover) < 0.1, (m.takeover_s, wire_takeover)
    by = m.answered_by[VIP4]
    assert set(by) - {"?"} == {"lsvm1", "lsvm2"}, by
    # a reply to a query that left while c1 still had lsvm2's MAC and came back after c1 had
    # learned lsvm1's cannot be told apart: counted as "?", and only such replies
    untold = [s for s in tl.records if isinstance(s, DnsSample) and s.ok and s.server == VIP4
              and s.node is None]
    assert all((s.error or "").startswith("neighbour changed") for s in untold), untold


def test_lab_measure_json_on_bare_lab(bare_pair: Lab) -> None:
    out = fresh_dir(REPO / "results" / f"measure-bare-{bare_pair.name}")
    r = subprocess.run(
        [sys.executable, "-m", "lab.cli", "measure", "--name", bare_pair.name, "--clients",
         "c1", "--server", VIP4, "--duration", "5", "--dhcp-clients", "5", "--json",
         "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["queries"] > 0 and m["failed"] == 0, m
    assert m["dhcp_bound_at_end"] == 5 and m["answered_by"] == {VIP4: {"lsvm2": m["queries"]}}
    assert (out / "timeline.png").exists() and (out / "metrics.json").exists()
    samples = [s for p in out.glob("dns-*.jsonl") for s in read_jsonl(p)
               if isinstance(s, DnsSample)]
    assert len(samples) == m["queries"]


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")
def test_lab_watch_in_tmux_on_bare_lab(bare_pair: Lab) -> None:
    session = f"hapair-watch-{os.getpid()}"
    cmd = (f"cd {REPO} && {sys.executable} -m lab.cli watch --name {bare_pair.name} "
           f"--clients c1 --server {VIP4} --duration 15; sleep 60")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "45", cmd],
                   check=True)
    try:
        def vip_row(screen: str) -> str:
            return next((ln for ln in screen.splitlines() if "192.168.1.4" in ln
                         and "%" in ln), "")
        screen = wait_for(lambda: subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
            text=True).stdout, until=lambda screen: "100.0%" in vip_row(screen) and "lsvm2"
            in vip_row(screen), timeout=30, interval=1.0, max_interval=1.0,
            what="lab watch to show 192.168.1.4 healthy, answered by lsvm2")
        assert "VIP holders" in screen and "lab " + bare_pair.name in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
