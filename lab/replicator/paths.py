"""Where a resource's daemon lives in a node; apart so ``drbdadm`` finds it without importing
the daemon."""

from __future__ import annotations

RUN_DIR = "/run/drbd"
EVENTS_LOG = "/var/log/drbd-events.log"


def run_paths(resource: str) -> tuple[str, str, str]:
    """(control socket, FUSE mount point, events log) of a resource."""
    return f"{RUN_DIR}/{resource}.ctl", f"{RUN_DIR}/{resource}", EVENTS_LOG
