"""Measurements of the replicated disk, as functions returning dicts (``make bench`` prints them).

Why these three: dnsmasq rewrites its whole lease file and fsyncs it on every lease change, so
that latency is what clients feel (compared with a plain loop device on the same host disk in
the same run, so the ratio is fair); the initial full sync and the bitmap resync decide how long
a returning node stays Inconsistent. The lease numbers come with where the time goes: FUSE
requests per rewrite and the replicator's own time per request (``breakdown``), the same run
with the peer disconnected (FUSE, loop and daemon alone), and each latency lever turned off.

Each function takes nodes of a running lab whose two replicator daemons are up (see
``service.start``); they leave the resource Connected and Secondary on both sides.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import time
from typing import TYPE_CHECKING, Any

from lab.replicator import service

if TYPE_CHECKING:
    from lab.node import Node

# Runs inside the node: rewrite a ~2 KiB lease file in place and fsync, like dnsmasq does.
_LEASE_SCRIPT = r"""
import os, sys, time, json
path, n = sys.argv[1], int(sys.argv[2])
lines = "".join(f"{1700000000+i} 02:00:00:00:{i//256:02x}:{i%256:02x} 192.168.1.{21+i} "
                f"host{i} 01:02:00:00:00:{i%256:02x}\n" for i in range(24))
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
out = []
for i in range(n):
    t = time.perf_counter()
    os.lseek(fd, 0, 0)
    os.ftruncate(fd, 0)
    os.write(fd, (lines + f"# {i}\n").encode())
    os.fsync(fd)
    out.append((time.perf_counter() - t) * 1000.0)
os.close(fd)
print(json.dumps(out))
"""


def _latencies(node: Node, directory: str, n: int) -> list[float]:
    cmd = (f"python3 -c {shlex.quote(_LEASE_SCRIPT)} {shlex.quote(directory)}/dnsmasq.leases "
           f"{n}")
    out = node.succeed(cmd, timeout=300)
    lat: list[float] = json.loads(out.strip().splitlines()[-1])
    return lat


def _io_stats(node: Node, name: str) -> dict[str, dict[str, float]]:
    st = service.full_status(node, name) or {}
    return dict(st.get("io_stats", {}))


def _breakdown(before: dict[str, Any], after: dict[str, Any], rewrites: int,
               median_ms: float) -> dict[str, Any]:
    """What one rewrite asks of the replicator, and how long the replicator takes to answer
    (from the kernel's FUSE request to our reply, peer included); the rest of the median is
    the writer, ext4, the loop device and FUSE in the kernel."""
    out: dict[str, Any] = {}
    inside = 0.0
    for op in ("write", "fsync"):
        a, b = before.get(op, {}), after.get(op, {})
        count = b.get("count", 0) - a.get("count", 0)
        ms = b.get("ms", 0.0) - a.get("ms", 0.0)
        if not count:
            continue
        out[f"{op}s_per_rewrite"] = round(count / rewrites, 2)
        out[f"{op}_mean_ms"] = round(ms / count, 3)
        if op == "write":
            out["write_mean_bytes"] = round((b.get("bytes", 0) - a.get("bytes", 0)) / count)
        inside += ms / rewrites
    if out:
        out["replicator_mean_ms_per_rewrite"] = round(inside, 3)
        out["median_ms"] = median_ms
    return out


def _summary(lat: list[float]) -> dict[str, float]:
    s = sorted(lat)
    return {"median_ms": round(statistics.median(s), 3),
            "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3)}


def lease_rewrite_latency(primary: Node, name: str = "drbd0", n: int = 300,
                          size_mib: int = 250) -> dict[str, Any]:
    """Lease-file rewrite+fsync on the replicated device vs a plain loop device, same run."""
    dev = service.resource(primary, name).host(primary.name).device
    primary.succeed(f"drbdadm primary {name}")
    plain_img = primary.dir / "replicator" / "bench-plain.img"
    plain_img.parent.mkdir(parents=True, exist_ok=True)
    with open(plain_img, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    loop = ""
    try:
        primary.succeed(f"mkdir -p /run/bench/repl /run/bench/plain && "
                        f"mkfs.ext4 -q -F {dev} && mount {dev} /run/bench/repl")
        loop = primary.succeed(f"losetup --find --show {plain_img}").strip()
        primary.lab.records.add("loop", device=loop, backing=str(plain_img))
        primary.succeed(f"mkfs.ext4 -q -F {loop} && mount {loop} /run/bench/plain")
        _latencies(primary, "/run/bench/repl", 20)  # warm up both
        _latencies(primary, "/run/bench/plain", 20)
        before = _io_stats(primary, name)
        repl = _summary(_latencies(primary, "/run/bench/repl", n))
        breakdown = _breakdown(before, _io_stats(primary, name), n, repl["median_ms"])
        plain = _summary(_latencies(primary, "/run/bench/plain", n))
    finally:
        primary.execute("umount /run/bench/repl; umount /run/bench/plain")
        if loop:
            primary.execute(f"losetup -d {loop}")
        primary.execute(f"drbdadm secondary {name}")
        plain_img.unlink(missing_ok=True)
    return {"replicated": repl, "plain_loop": plain, "samples": n,
            "ratio_median": round(repl["median_ms"] / plain["median_ms"], 2),
            "ratio_p99": round(repl["p99_ms"] / plain["p99_ms"], 2), "goal_ratio": 2.5,
            "breakdown": breakdown}


def full_sync(source: Node, target: Node, name: str = "drbd0",
              timeout: float = 300.0) -> dict[str, Any]:
    """Re-create both metadata blocks and time the initial ``--overwrite-data-of-peer`` sync."""
    for node in (source, target):
        node.succeed(f"drbdadm down {name} && drbdadm create-md --force {name} && "
                     f"drbdadm up {name}")
    for node in (source, target):
        service.wait_for(node, lambda s: s["cstate"] == "Connected", name, 60, "connected")
    t0 = time.monotonic()
    source.succeed(f"drbdadm -- --overwrite-data-of-peer primary {name}")
    st = service.wait_connected(target, name, timeout)
    wall = time.monotonic() - t0
    source.succeed(f"drbdadm secondary {name}")
    last = st.get("last_resync", {})
    mib = last.get("kib", 0) / 1024
    return {"size_mib": round(mib, 1), "seconds": round(wall, 3),
            "resync_seconds": last.get("seconds"),
            "mib_per_s": round(mib / wall, 1) if wall else None}


def resync(primary: Node, secondary: Node, name: str = "drbd0", mib: int = 32,
           timeout: float = 300.0) -> dict[str, Any]:
    """Disconnect, write ``mib`` MiB on the primary, reconnect: time the bitmap resync."""
    dev = service.resource(primary, name).host(primary.name).device
    secondary.succeed(f"drbdadm disconnect {name}")
    primary.succeed(f"drbdadm primary {name}")
    primary.succeed(f"dd if=/dev/urandom of={dev} bs=1M count={mib} seek=8 oflag=direct "
                    "status=none", timeout=timeout)
    oos = service.full_status(primary, name) or {}
    t0 = time.monotonic()
    secondary.succeed(f"drbdadm connect {name}")
    st = service.wait_connected(secondary, name, timeout)
    wall = time.monotonic() - t0
    primary.succeed(f"drbdadm secondary {name}")
    last = st.get("last_resync", {})
    kib = last.get("kib", 0)
    return {"written_mib": mib, "out_of_sync_kib_before": oos.get("out_of_sync_kib"),
            "resynced_kib": kib, "seconds": round(wall, 3),
            "mib_per_s": round(kib / 1024 / wall, 1) if wall else None}


def link_rtt(primary: Node, name: str = "drbd0", count: int = 300) -> dict[str, Any]:
    """Round trips through the daemon's request path (what each protocol-C write waits for)."""
    reply = service.control(primary, {"cmd": "ping", "count": count}, name)
    return dict(reply["rtt_ms"]) if reply and reply.get("rc") == 0 else {}


def _restart(nodes: tuple[Node, ...], name: str, env: str = "") -> None:
    for node in nodes:
        node.succeed(f"drbdadm down {name}")
    for node in nodes:
        node.succeed(f"{env} drbdadm up {name}")
    service.wait_connected(nodes[0], name, 60)


def lease_rewrite_without_image_sync(primary: Node, secondary: Node, name: str = "drbd0",
                                     n: int = 300) -> dict[str, Any]:
    """The lease benchmark with ``HAPAIR_REPL_IMAGE_SYNC=0``: flushes still wait until the
    peer has written everything before them, but neither node fdatasyncs its image (the lab's
    faults never lose the host's page cache). The plain loop keeps its fsync."""
    try:
        _restart((primary, secondary), name, "HAPAIR_REPL_IMAGE_SYNC=0")
        return lease_rewrite_latency(primary, name, n)
    finally:
        _restart((primary, secondary), name)


def lease_rewrite_disconnected(primary: Node, secondary: Node, name: str = "drbd0",
                               n: int = 300) -> dict[str, Any]:
    """The lease benchmark with the peer disconnected: FUSE, the loop and this daemon alone
    (writes complete locally and mark the bitmap), so the rest of the protocol-C cost is the
    replication itself."""
    secondary.succeed(f"drbdadm disconnect {name}")
    try:
        return lease_rewrite_latency(primary, name, n)
    finally:
        secondary.succeed(f"drbdadm connect {name}")
        service.wait_connected(secondary, name, 120)


def lease_rewrite_levers(primary: Node, secondary: Node, name: str = "drbd0",
                         n: int = 300) -> dict[str, Any]:
    """Protocol C with one of the replicator's latency levers turned off at a time: what
    each buys, measured in the same run as the default."""
    levers = {"buffered_loop": "HAPAIR_REPL_LOOP_DIO=0",
              "no_early_writeback": "HAPAIR_REPL_EARLY_WRITEBACK=0"}
    out: dict[str, Any] = {}
    try:
        for key, env in levers.items():
            _restart((primary, secondary), name, env)
            out[key] = lease_rewrite_latency(primary, name, n)
    finally:
        _restart((primary, secondary), name)
    return out


def _set_protocol(nodes: tuple[Node, ...], name: str, protocol: str) -> str:
    """Rewrite ``protocol X;`` in every node's .res and restart the daemons; returns the old."""
    old = "C"
    for node in nodes:
        path = node.path(f"/etc/drbd.d/{name}.res")
        text = path.read_text()
        m = re.search(r"protocol\s+([ABC])\s*;", text)
        if m:
            old = m.group(1)
            with open(path, "w") as f:  # in place: the node sees it through a bind mount
                f.write(text[:m.start(1)] + protocol + text[m.end(1):])
    _restart(nodes, name)
    return old


def lease_rewrite_by_protocol(primary: Node, secondary: Node, name: str = "drbd0",
                              protocols: tuple[str, ...] = ("C", "A"),
                              n: int = 300) -> dict[str, Any]:
    """The lease benchmark under each DRBD protocol (the seed uses C; A is asynchronous)."""
    out: dict[str, Any] = {}
    original = None
    try:
        for proto in protocols:
            old = _set_protocol((primary, secondary), name, proto)
            original = original or old
            out[proto] = lease_rewrite_latency(primary, name, n)
    finally:
        if original:
            _set_protocol((primary, secondary), name, original)
    return out


def run_all(lab_name: str = "rbench", size_mib: int = 250, n: int = 300,
            protocols: tuple[str, ...] = ("C", "A")) -> dict[str, Any]:
    """Everything ``make bench`` reports for the replicated disk, on a fresh bare lab.

    Creates the lab (lsvm1/lsvm2 only matter), installs the seed's ``drbd0`` resource with a
    random secret, measures, and removes the lab again.
    """
    import secrets

    from lab.lab import Lab

    lab = Lab.create(lab_name, profile="fast", stack="none")
    try:
        lab.up()
        lsvm1, lsvm2 = lab["lsvm1"], lab["lsvm2"]
        text = service.seed_resource_text(secrets.token_hex(16), "ping-int 2;")
        for node in (lsvm1, lsvm2):
            service.write_resource(node, text)
            service.start(node, "drbd0", size=size_mib * 1024 * 1024)
        out: dict[str, Any] = {"mode": service.mode(), "size_mib": size_mib}
        out["full_sync"] = full_sync(lsvm2, lsvm1)
        out["resync"] = resync(lsvm2, lsvm1, mib=32)
        out["link_rtt_ms"] = link_rtt(lsvm2)
        out["lease_rewrite"] = lease_rewrite_by_protocol(lsvm2, lsvm1, protocols=protocols, n=n)
        out["lease_rewrite_disconnected"] = lease_rewrite_disconnected(lsvm2, lsvm1, n=n)
        out["lease_rewrite_levers_off"] = lease_rewrite_levers(lsvm2, lsvm1, n=n)
        out["lease_rewrite_no_image_sync"] = lease_rewrite_without_image_sync(lsvm2, lsvm1, n=n)
        return out
    finally:
        lab.down()


def main() -> int:
    print(json.dumps(run_all(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
