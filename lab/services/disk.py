"""The replicated disk under the seed's `drbddisk` + `Filesystem` resources, via lab.replicator.

Why an adapter: the replicator (lab/replicator) owns the DRBD substitute; the stack needs a few
moments only — boot (`drbdadm up`, as DRBD's init does), a one-time bootstrap of the pair the way
the seed does it by hand (create-md, `--overwrite-data-of-peer primary` on lsvm2, mkfs.ext4, mount,
mkdir dnsmasq, copy dnsmasq.conf and banner_add_hosts, umount), halt (`drbdadm down`) and
after_crash. Without lab.replicator.service the stack runs in `local` disk mode (no drbddisk or
Filesystem resources; /srv/drbd0 a plain directory per node) and says so everywhere.
"""

from __future__ import annotations

import importlib
import shlex
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


def boot(node: Node) -> None:
    _service().start(node, RESOURCE)


def bootstrap(primary: Node, secondary: Node, files: Mapping[str, str]) -> None:
    """First start of the pair: sync, mkfs, then put dnsmasq's files on the disk (Secondary after).

    `files` maps a path under /srv/drbd0 to its content; written through the node's own mount
    namespace (the disk is mounted there only).
    """
    svc = _service()
    svc.bootstrap(primary, secondary, RESOURCE, fs=True)
    primary.succeed(f"drbdadm primary {RESOURCE} && mkdir -p {MOUNT} && "
                    f"mount -t ext4 /dev/{RESOURCE} {MOUNT}", timeout=60)
    try:
        for path, content in files.items():
            q = shlex.quote(path)
            rc, out = primary.execute(f"mkdir -p $(dirname {q}) && cat > {q}", input=content)
            if rc != 0:
                raise RuntimeError(f"{primary.name}: cannot write {path}: {out}")
    finally:
        primary.succeed(f"umount {MOUNT} && drbdadm secondary {RESOURCE}", timeout=60)


def halt(node: Node) -> None:
    _service().stop(node, RESOURCE)


def after_crash(node: Node) -> None:
    svc = _service()
    if hasattr(svc, "after_crash"):
        svc.after_crash(node, RESOURCE)


def status(node: Node) -> dict[str, Any]:
    result: dict[str, Any] = _service().status(node, RESOURCE)
    return result
