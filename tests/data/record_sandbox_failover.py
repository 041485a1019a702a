"""Records a real failover in the probes' sandbox (real dnsmasq, real packets) as a timeline,
for the checks' recorded-timeline tests. Run as root from the repo root:

    .venv/bin/python tests/data/record_sandbox_failover.py tests/data/sandbox-failover

Story: srv1 holds the VIP and serves DNS+DHCP; 10 fleet clients bind; at ~3 s srv1's link goes
down (the "crash"); 0.7 s later srv2 takes the VIP and sends gratuitous ARP; at ~5 s the fleet
is forced to RENEW (unicast to srv1, which is gone: no answer), at ~8 s to REBIND (broadcast:
srv2 answers). The expectations file next to the timeline was written by a person from the
picture, not by the checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.probes.records import FaultEvent, Record, VipEvent
from lab.probes.sandbox import Segment, dnsmasq_argv
from lab.report import plot_timeline
from lab.timeline import Header, Timeline, build

REPO = Path(__file__).resolve().parents[2]
MAC1, MAC2, MACC = "02:00:00:00:03:06", "02:00:00:00:03:07", "02:00:00:00:03:99"
VIP = "10.99.0.4"


def main(prefix: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    header = Header.start(prefix.name, seed=None, source="tests/data/record_sandbox_failover.py")
    extra: list[Record] = []
    with tempfile.TemporaryDirectory() as tmp, Segment(ttl_s=120) as seg:
        wd = Path(tmp)
        seg.add_host("srv1", MAC1, ["10.99.0.6/24", f"{VIP}/24"])
        seg.add_host("srv2", MAC2, ["10.99.0.7/24"])
        seg.add_host("cli", MACC, ["10.99.0.99/24"])
        for h, addr in (("srv1", "10.99.0.6"), ("srv2", "10.99.0.7")):
            (wd / h).mkdir()
            seg.start(h, [*dnsmasq_argv(wd / h, VIP), f"--dhcp-option=option:router,{addr}"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        extra.append(VipEvent(time.monotonic(), VIP, ("srv1",)))
        dns_out, dhcp_out = wd / "dns.jsonl", wd / "dhcp.jsonl"
        fleet = seg.start("cli", [sys.executable, "-m", "lab.probes.dhcp", "--clients", "10",
                                  "--duration", "12", "--retransmit-first", "1",
                                  "--out", str(dhcp_out)], env=env)
        probe = seg.start("cli", [sys.executable, "-m", "lab.probes.dns", "--server", VIP,
                                  "--rate", "20", "--duration", "11", "--timeout", "0.5",
                                  "--probe-id", "cli", "--mac-map", f"{MAC1}=srv1,{MAC2}=srv2",
                                  "--query", "A:lsvm1.internal.thesteins.org",
                                  "--names-from", str(dhcp_out), "--out", str(dns_out)],
                          env=env)
        time.sleep(3.0)
        t_fault = time.monotonic()
        extra.append(FaultEvent(t_fault, "start", "crash", "crash-srv1", ("srv1",)))
        with seg.hosts["srv1"].ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="down")
        time.sleep(0.7)
        with seg.hosts["srv2"].ipr() as ipr:
            ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=VIP, prefixlen=24)
        extra.append(VipEvent(time.monotonic(), VIP, ("srv1", "srv2")))  # srv1's kernel too
        seg.hosts["srv2"].run(["/usr/libexec/heartbeat/send_arp", "-i", "100", "-r", "3",
                               "eth0", VIP, "auto", VIP, "ffffffffffff"])
        time.sleep(1.3)
        os.kill(fleet.pid, signal.SIGUSR1)  # renew: unicast to srv1's server-id, unanswered
        time.sleep(3.0)
        os.kill(fleet.pid, signal.SIGUSR2)  # rebind: broadcast, srv2 answers
        probe.wait(timeout=30)
        fleet.wait(timeout=30)
        extra.append(FaultEvent(time.monotonic(), "end", "crash", "crash-srv1", ("srv1",)))
        tl = build(header.finish(), jsonl=[dns_out, dhcp_out], records=extra)
    out = prefix.with_name(prefix.name + ".timeline.jsonl")
    Timeline(tl.header, tl.records).dump(out)
    plot_timeline(tl, prefix.with_name(prefix.name + ".png"), title=prefix.name)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
