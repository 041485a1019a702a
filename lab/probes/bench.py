"""Benchmarks of the instrument itself, each a function returning a dict (``make bench`` prints
them): how fast the DHCP fleet binds, what a DNS probe costs in CPU, and how fine its timing
is. They run against a real dnsmasq in a throwaway sandbox segment (lab.probes.sandbox), not
the lab, so the numbers describe the probes and not the pair under test.

Numbers here are measurements, never asserted by tests.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.probes.records import DhcpEvent, DnsSample
from lab.probes.sandbox import Segment, dnsmasq_argv
from lab.timeline import read_jsonl

REPO = Path(__file__).resolve().parents[2]
SERVER_MAC, CLIENT_MAC = "02:00:00:00:0b:06", "02:00:00:00:0b:99"
VIP = "10.99.0.4"


def _segment(workdir: Path) -> Segment:
    seg = Segment(ttl_s=600).__enter__()
    try:
        seg.add_host("srv", SERVER_MAC, ["10.99.0.6/24", f"{VIP}/24"])
        seg.add_host("cli", CLIENT_MAC, ["10.99.0.99/24"])
        seg.start("srv", dnsmasq_argv(workdir, VIP), stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    except BaseException:
        seg.__exit__(None, None, None)
        raise
    return seg


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def bind_rate(clients: int = 200) -> dict[str, Any]:
    """Time for ``clients`` fleet clients to go from the first DISCOVER to all BOUND, and each
    client's own DISCOVER→BOUND (DORA) time. The fleet starts clients one after another in
    one process, so the fleet's rate is bounded by client start-up, not by dnsmasq."""
    with tempfile.TemporaryDirectory(prefix="hapair-bench-") as tmp:
        wd = Path(tmp)
        seg = _segment(wd)
        try:
            out = wd / "dhcp.jsonl"
            t0 = time.monotonic()
            p = seg.start("cli", [sys.executable, "-m", "lab.probes.dhcp", "--clients",
                                  str(clients), "--duration", "120", "--exit-when-bound",
                                  "--spread", "0", "--out", str(out)], env=_env())
            p.wait(timeout=180)
            wall = time.monotonic() - t0
            evs = [r for r in read_jsonl(out) if isinstance(r, DhcpEvent)]
        finally:
            seg.__exit__(None, None, None)
    first_send = min((e.t for e in evs if e.event == "send"), default=None)
    bound: dict[str, float] = {}
    for e in evs:
        if e.event == "bound":
            bound.setdefault(e.client, e.t)
    last = max(bound.values(), default=None)
    first_send_of: dict[str, float] = {}
    for e in evs:
        if e.event == "send":
            first_send_of.setdefault(e.client, e.t)
    dora = sorted(bound[c] - first_send_of[c] for c in bound if c in first_send_of)
    span = (last - first_send) if (last is not None and first_send is not None) else None
    return {
        "clients": clients,
        "bound": len(bound),
        "first_discover_to_last_bound_s": span,
        "binds_per_s": (len(bound) / span) if span else None,
        "dora_median_ms": 1000 * statistics.median(dora) if dora else None,
        "dora_max_ms": 1000 * dora[-1] if dora else None,
        "process_wall_s_incl_macvlan_setup_and_release": wall,
    }


def probe_cpu(rate_hz: float, seconds: float = 10.0) -> dict[str, Any]:
    """CPU used by one DNS probe process asking at ``rate_hz`` for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="hapair-bench-") as tmp:
        wd = Path(tmp)
        seg = _segment(wd)
        try:
            out = wd / "dns.jsonl"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            # nsenter --net execs the probe, so the child's rusage is the probe's
            p = seg.start("cli", [sys.executable, "-m", "lab.probes.dns", "--server", VIP,
                                  "--rate", str(rate_hz), "--duration", str(seconds),
                                  "--mac-map", f"{SERVER_MAC}=srv", "--out", str(out)],
                          env=_env())
            p.wait(timeout=seconds + 30)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples = [r for r in read_jsonl(out) if isinstance(r, DnsSample)]
        finally:
            seg.__exit__(None, None, None)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = [s for s in samples if s.ok]
    return {
        "rate_hz": rate_hz,
        "seconds": seconds,
        "queries": len(samples),
        "ok": len(ok),
        "cpu_s": cpu,
        "cpu_percent_of_one_core": 100 * cpu / seconds,
        "cpu_ms_per_query": 1000 * cpu / max(1, len(samples)),
    }


def timing_resolution(rate_hz: float = 100.0, seconds: float = 5.0) -> dict[str, Any]:
    """How exactly the probe keeps its schedule and how fine its stamps are.

    * ``clock_resolution_s``: CLOCK_MONOTONIC's resolution as the kernel reports it;
    * send jitter: each query's send time minus its slot ``start + i / rate``;
    * latency floor: the fastest reply (what a "0 ms" answer costs the probe itself).
    """
    with tempfile.TemporaryDirectory(prefix="hapair-bench-") as tmp:
        wd = Path(tmp)
        seg = _segment(wd)
        try:
            out = wd / "dns.jsonl"
            p = seg.start("cli", [sys.executable, "-m", "lab.probes.dns", "--server", VIP,
                                  "--rate", str(rate_hz), "--duration", str(seconds),
                                  "--out", str(out)], env=_env())
            p.wait(timeout=seconds + 30)
            samples = sorted((r for r in read_jsonl(out) if isinstance(r, DnsSample)),
                             key=lambda s: s.t)
        finally:
            seg.__exit__(None, None, None)
    if not samples:
        return {"rate_hz": rate_hz, "queries": 0}
    start = samples[0].t
    jitter = [s.t - (start + i / rate_hz) for i, s in enumerate(samples)]
    lat = sorted(s.latency_s for s in samples if s.latency_s is not None)
    return {
        "rate_hz": rate_hz,
        "queries": len(samples),
        "clock_resolution_s": time.get_clock_info("monotonic").resolution,
        "send_jitter_median_ms": 1000 * statistics.median(jitter),
        "send_jitter_max_ms": 1000 * max(jitter),
        "latency_min_ms": 1000 * lat[0] if lat else None,
        "latency_median_ms": 1000 * statistics.median(lat) if lat else None,
        "outage_edge_resolution_s": 1 / rate_hz,
    }


def run_all() -> dict[str, Any]:
    return {
        "dhcp_bind_200": bind_rate(200),
        "dns_probe_cpu_20hz": probe_cpu(20.0),
        "dns_probe_cpu_100hz": probe_cpu(100.0),
        "dns_probe_timing_100hz": timing_resolution(100.0),
    }


if __name__ == "__main__":
    print(json.dumps(run_all(), indent=2))
