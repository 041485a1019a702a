"""What this machine can do for a lab: kernel features, daemons, and the modes they imply."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab import container
from lab.cgroup import Cgroup, hierarchy_root
from lab.net import detect_mode


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _filesystems() -> set[str]:
    try:
        return {line.split()[-1] for line in Path("/proc/filesystems").read_text().splitlines()}
    except FileNotFoundError:
        return set()


def _version(argv: list[str], package: str) -> tuple[bool, str]:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return False, f"not installed (apt-get install {package})"
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                            capture_output=True, text=True)
    if result.returncode == 0 and result.stdout:
        return True, f"{package} {result.stdout}"
    return True, "installed (version unknown)"


def replicated_disk_mode() -> str:
    return "kernel DRBD" if Path("/proc/drbd").exists() else "userspace replicator (FUSE)"


def vlan_mode() -> tuple[str, str]:
    """Probe 802.1Q inside a throwaway container, never in the root namespace."""
    with tempfile.TemporaryDirectory(prefix="hapair-doctor-") as tmp:
        cgroup = Cgroup(hierarchy_root() / f"doctor-{os.getpid()}" / "probe")
        spec = container.ContainerSpec(hostname="doctor", fs_root=Path(tmp),
                                       console=Path(tmp) / "console.log", cgroup=cgroup,
                                       private=False)
        running = container.start(spec)
        try:
            return detect_mode(running.netns_path)
        finally:
            cgroup.remove()
            if running.popen is not None:
                running.popen.wait()


def run_checks() -> list[Check]:
    fs = _filesystems()
    checks = [
        Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0
              else "the lab needs root (namespaces, bridges, mounts)"),
        Check("kernel", True, platform.release()),
        Check("namespaces", all(Path(f"/proc/self/ns/{n}").exists()
                                for n in ("net", "mnt", "uts", "ipc", "pid")),
              "net, mnt, uts, ipc, pid"),
        Check("freezer cgroup", hierarchy_root().parent.is_dir(), str(hierarchy_root())),
        Check("loop devices", Path("/dev/loop-control").exists(), "/dev/loop-control"),
        Check("FUSE", Path("/dev/fuse").exists() and "fuse" in fs, "/dev/fuse"),
        Check("ext4", "ext4" in fs, "in /proc/filesystems"),
        Check("DRBD module", Path("/proc/drbd").exists(),
              "present" if Path("/proc/drbd").exists() else "absent: the userspace replicator "
              "stands in for it", required=False),
    ]
    for label, argv, package in (
        ("dnsmasq", ["dnsmasq"], "dnsmasq"),
        ("heartbeat", ["/usr/libexec/heartbeat/heartbeat"], "heartbeat"),
        ("drbd-utils", ["drbdadm"], "drbd-utils"),
        ("ddclient", ["ddclient"], "ddclient"),
        ("dhclient", ["dhclient"], "isc-dhcp-client"),
        ("nftables", ["nft"], "nftables"),
        ("tcpdump", ["tcpdump"], "tcpdump"),
        ("tini", ["tini"], "tini"),
        ("nsenter/unshare", ["nsenter"], "util-linux"),
    ):
        ok, detail = _version(argv, package)
        checks.append(Check(label, ok, detail))
    checks.append(docker_check())
    return checks


def docker_check() -> Check:
    """The docker backend's engine: whose it is and its storage driver, or why there is none.
    Never starts a daemon (`lab up --backend docker` does, on first use)."""
    from lab import dockerd
    try:
        info = dockerd.info()
    except Exception as exc:  # an engine that answers badly is still "not usable"
        return Check("docker backend", False, f"engine unusable: {exc}", required=False)
    if not info.get("installed"):
        return Check("docker backend", False, "dockerd not installed (make setup "
                     "BACKEND=docker)", required=False)
    if "version" not in info:
        return Check("docker backend", True, "dockerd installed; the lab starts its own "
                     f"daemon on first use ({dockerd.DATA_ROOT}, no bridge, no iptables)",
                     required=False)
    return Check("docker backend", True, f"{info['engine']} dockerd {info['version']}, "
                 f"storage {info['storage_driver']}, data root {info['data_root']}",
                 required=False)
