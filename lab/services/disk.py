"""The replicated disk under the seed's `drbddisk` + `Filesystem` resources, via lab.replicator.

Why an adapter: the replicator (lab/replicator) owns the DRBD substitute; the stack needs a few
moments only — boot (`drbdadm up`, as DRBD's init does), a one-time bootstrap of the pair the way
the seed does it by hand (create-md, `--overwrite-data-of-peer primary` on lsvm2, mkfs.ext4, mount,
mkdir dnsmasq, copy dnsmasq.conf and banner_add_hosts, umount), halt (`drbdadm down`) and
after_crash. Without lab.replicator.service the stack runs in `local` disk mode (no drbddisk or
Filesystem resources; /srv/drbd0 a plain directory per node) and says so everywhere.

The pair's first boot starts from this machine's pre-made image (formatted, UpToDate on both
sides, see lab.replicator.service.seed_image) instead of an initial sync and mkfs: the seed's
manual steps then reduce to putting dnsmasq's files on the disk, through DRBD as before. Each
step's time goes to the lab's event log (`disk.boot`, `disk.bootstrap`).
"""

from __future__ import annotations

import hashlib
import importlib
import shlex
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.node import Node

RESOURCE = "drbd0"
MOUNT = "/srv/drbd0"


def _service() -> Any:
    return importlib.import_module("lab.replicator.service")


def available() -> bool:
    """True when the replicator exposes its node service."""
    try:
        svc = _service()
    except ImportError:
        return False
    return all(hasattr(svc, n) for n in ("start", "stop", "bootstrap", "status"))


def generation(node: Node) -> int:
    """The pair's first generation UUID: the same on both servers of one lab (derived from the
    lab's directory and creation time), different from any other lab's."""
    seed = f"{node.lab.dir}:{node.lab.identity.get('created')}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") & ~1 | 0x100


def boot(node: Node) -> None:
    svc = _service()
    started = time.monotonic()
    seeded = bool(getattr(svc, "seed_image", None)) and svc.seed_image(node, generation(node))
    copied = time.monotonic()
    svc.start(node, RESOURCE)
    node.lab.log_event("disk.boot", node=node.name, seeded=seeded,
                       seconds=round(time.monotonic() - started, 4),
                       image_s=round(copied - started, 4),
                       attach_s=round(time.monotonic() - copied, 4))


def bootstrap(primary: Node, secondary: Node, files: Mapping[str, str]) -> None:
    """First start of the pair: sync and mkfs unless both sides started from the pre-made
    image (then they are UpToDate, ext4 included), then put dnsmasq's files on the disk
    (Secondary after).

    `files` maps a path under /srv/drbd0 to its content; written through the node's own mount
    namespace (the disk is mounted there only).
    """
    svc = _service()
    started = time.monotonic()
    seeded = _both_seeded(primary, secondary)
    if not seeded:
        svc.bootstrap(primary, secondary, RESOURCE, fs=True)
    synced = time.monotonic()
    # Primary, mount, the files, unmount, Secondary -- and never left Primary or mounted; with
    # the replicator the role changes go straight to its control socket (what `drbdadm
    # primary` would send, without starting a process for it), the rest is one shell
    direct = not svc.real_drbd() and hasattr(svc, "control")
    if direct:
        _set_role(primary, "primary")
    try:
        rc, out = primary.execute(_put_files_script(files, roles=not direct), timeout=60)
    finally:
        if direct:
            _set_role(primary, "secondary")
    if rc != 0:
        raise RuntimeError(f"{primary.name}: cannot put dnsmasq's files on the disk: {out}")
    primary.lab.log_event("disk.bootstrap", seeded=seeded,
                          sync_mkfs_s=round(synced - started, 4),
                          files_s=round(time.monotonic() - synced, 4))


def write_files_lines(files: Mapping[str, str]) -> list[str]:
    """Shell lines that write each file exactly (a quoted here-document each; one without a
    final newline loses the one the here-document adds) and set ok=1 if any write failed."""
    lines = []
    for n, (path, content) in enumerate(files.items()):
        q = shlex.quote(path)
        marker = f"HAPAIR_FILE_{n}_END"
        while marker in content:
            marker += "_"
        body = content if content.endswith("\n") or not content else content + "\n"
        lines.append(f"mkdir -p \"$(dirname {q})\" && cat > {q} <<'{marker}' || ok=1\n"
                     f"{body}{marker}")
        if content and not content.endswith("\n"):
            lines.append(f"truncate -s -1 {q} || ok=1")
    return lines


def _put_files_script(files: Mapping[str, str], roles: bool = True) -> str:
    """A shell script that mounts the disk, writes `files` (each a quoted here-document, so
    any content passes unchanged) and unmounts it -- with `roles`, between `drbdadm primary`
    and `drbdadm secondary`; the unmount and Secondary happen whatever failed before them,
    and the script fails if anything did."""
    secondary = f"drbdadm secondary {RESOURCE}" if roles else "true"
    lines = ["set -u", "cleanup() { umount " + MOUNT + " 2>/dev/null; " + secondary + "; }"]
    if roles:
        lines.append(f"drbdadm primary {RESOURCE} || exit 1")
    lines += [f"mkdir -p {MOUNT} && mount -t ext4 /dev/{RESOURCE} {MOUNT} || "
              "{ cleanup; exit 1; }", "ok=0"]
    lines += write_files_lines(files)
    lines += [f"umount {MOUNT} || ok=1", f"{secondary} || ok=1", "exit $ok"]
    return "\n".join(lines) + "\n"


def _set_role(node: Node, role: str) -> None:
    """Primary or Secondary through the replicator's control socket, as `drbdadm` asks it."""
    request: dict[str, Any] = {"cmd": role}
    if role == "primary":
        request["force"] = False
    reply = _service().control(node, request, RESOURCE, timeout=60)
    if reply is None or reply.get("rc") != 0:
        raise RuntimeError(f"{node.name}: {RESOURCE} refused to become {role}: {reply}")


def _both_seeded(primary: Node, secondary: Node) -> bool:
    """Whether the pair came up from the pre-made image: connected, both UpToDate. Waits for
    the connection either way (a fresh pair must be connected to be bootstrapped too)."""
    svc = _service()
    if not hasattr(svc, "seed_image") or svc.real_drbd():
        return False
    state = svc.wait_for(primary, lambda s: s["cstate"] in (
        "Connected", "SyncSource", "SyncTarget", "StandAlone") or s["dstate"] == "Inconsistent",
        RESOURCE, 60.0, "connected or known to be fresh")
    return bool(state["cstate"] == "Connected" and state["dstate"] == "UpToDate"
                and state["pdsk"] == "UpToDate")


def halt(node: Node) -> None:
    _service().stop(node, RESOURCE)


def after_crash(node: Node) -> None:
    svc = _service()
    if hasattr(svc, "after_crash"):
        svc.after_crash(node, RESOURCE)


def status(node: Node) -> dict[str, Any]:
    result: dict[str, Any] = _service().status(node, RESOURCE)
    return result
