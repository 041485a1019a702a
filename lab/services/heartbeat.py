"""heartbeat 3 inside a node: its private runtime directories, start, orderly stop, its own view.

Why each step (measured, see DESIGN.md): heartbeat needs /run/heartbeat/{ccm,crm,dopd} owned by
hacluster:haclient 0750, /run/resource-agents and /run/lock, all on the node's volatile /run; a
node's /var/lib/heartbeat starts as a copy of the host's, so an hb_uuid there would make both
nodes the same node — it is removed before first boot and heartbeat makes a fresh one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import walk

if TYPE_CHECKING:
    from lab.node import Node

HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
LOG = "/var/log/ha-log"
RUN_DIRS = ("/run/heartbeat/ccm", "/run/heartbeat/crm", "/run/heartbeat/dopd")
UUID_FILES = ("hb_uuid", "hb_generation")


def forget_identity(var_lib_heartbeat: Path) -> None:
    """Remove a copied hb_uuid/hb_generation (host side, before the node's first boot)."""
    for name in UUID_FILES:
        (var_lib_heartbeat / name).unlink(missing_ok=True)


def prepare_runtime(node: Node) -> None:
    """Create heartbeat's directories on the node's fresh /run (every boot)."""
    dirs = " ".join(RUN_DIRS)
    node.succeed(f"mkdir -p {dirs} /run/resource-agents /run/lock "
                 f"&& chown hacluster:haclient {dirs} && chmod 0750 {dirs}")


def start(node: Node) -> None:
    """Start the daemon and wait until it answers."""
    launch(node)
    wait_running(node)


def launch(node: Node) -> None:
    """Start the daemon; it puts itself in the background (still in the node's cgroup).

    Separate from `wait_running` so a pair can be launched together: started one after the
    other, the first node's initdead can run out before the second exists and it takes the
    second's resources at a cold start.
    """
    rc, out = node.execute(f"{HEARTBEAT} </dev/null >>/var/log/heartbeat.out 2>&1", timeout=30)
    if rc != 0:
        raise RuntimeError(f"{node.name}: {HEARTBEAT} exited {rc}: {out.strip()}")
    node.lab.log_event("heartbeat.launch", node=node.name)


def wait_running(node: Node, timeout: float = 60) -> None:
    """Wait until `cl_status hbstatus` answers; on failure the error carries the log's tail."""
    try:
        node.wait_until_succeeds("cl_status hbstatus >/dev/null 2>&1", timeout=timeout)
    except AssertionError as exc:
        _, log = node.execute(f"tail -n 25 {LOG} /var/log/heartbeat.out", timeout=10)
        raise RuntimeError(f"{node.name}: heartbeat is not answering after {timeout} s (a "
                           f"blocked sync(2) shows as D state on super_lock):\n{log}") from exc


def acquired_resources(node: Node) -> bool:
    """Whether heartbeat on the node has begun taking a resource group (its log says so; read
    from the host)."""
    return "Acquiring resource group" in (walk.read_text(node.path(LOG)) or "")


def stop(node: Node, timeout: float = 120) -> None:
    """Orderly stop: heartbeat releases its resources (the peer takes them) and exits."""
    node.execute(f"{HEARTBEAT} -k >/dev/null 2>&1", timeout=timeout)


def running(node: Node) -> bool:
    rc, _ = node.execute("cl_status hbstatus >/dev/null 2>&1", timeout=10)
    return rc == 0


# prints one "NODE STATUS" line per node heartbeat knows and one "rsc RESOURCES" line, in any
# order: each cl_status is a ~30 ms session with heartbeat's API, so all after the first run
# side by side (each line is one short write, whole in the pipe)
VIEW_SCRIPT = ("for n in $(cl_status listnodes); do echo \"$n $(cl_status nodestatus $n)\" & "
               "done; echo \"rsc $(cl_status rscstatus)\" & wait")


def view(node: Node) -> dict[str, Any]:
    """heartbeat's own idea of the cluster, as `cl_status` reports it on this node."""
    if not running(node):
        return {"running": False}
    _rc, out = node.execute(VIEW_SCRIPT, timeout=10)
    return parse_view(out)


def parse_view(out: str) -> dict[str, Any]:
    """VIEW_SCRIPT's output as ``{"running": True, "nodes": {name: status}, "resources"}``."""
    nodes: dict[str, str] = {}
    resources = ""
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "rsc":
            resources = words[1]
        elif len(words) >= 2:
            nodes[words[0]] = words[1]
    return {"running": True, "nodes": nodes, "resources": resources}
