"""`reboot` and `poweroff` inside a node, which has no init system to do them.

The seed's DRBD handlers end in ``reboot -f`` (pri-lost-after-sb, pri-on-incon-degr): the node
that lost a split-brain must reboot. Inside a node that command would reach the host's
systemctl. Instead, each node gets shims in /usr/local/sbin (first on its PATH) that leave a
request in the node's own persistent /var/lib/misc; the lab's power agent (one small host-side
process per lab, in the lab's cgroup, so teardown removes it like everything else) carries it
out with the node API: ``reboot -f`` is a power cycle (crash, start), plain ``reboot`` an orderly
one, ``poweroff`` a shutdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cgroup import Cgroup

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node

REQUEST = "/var/lib/misc/hapair-lab-power"
POLL_S = 0.1

SHIM = """#!/bin/sh
# hapair-lab: a node has no init system; ask the lab's power agent (lab/power.py)
verb=$(basename "$0")
case " $* " in *" -f "*|*" --force "*|*" -ff "*) how=force ;; *) how=orderly ;; esac
printf '%s %s\\n' "$verb" "$how" > {request}.tmp && mv {request}.tmp {request}
# like the real command: do not come back; the node is about to go down
exec sleep 3600
"""


def install_shims(node: Node) -> None:
    for verb in ("reboot", "poweroff", "halt"):
        path = node.path(f"/usr/local/sbin/{verb}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SHIM.replace("{request}", REQUEST))
        path.chmod(0o755)


def start_agent(lab: Lab) -> None:
    """Start the lab's power agent in the lab's cgroup subtree."""
    cgroup = Cgroup.for_node(lab.name, "agent")
    lab.records.add("cgroup", path=str(cgroup.path))
    cgroup.create()
    log = open(lab.dir / "agent.log", "ab")  # noqa: SIM115 -- handed to the child
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    try:
        # joined by a preexec_fn, not `Cgroup.entered`'s shell: when `lab up` returns, the
        # agent must already be the process it stays (a snapshot of the machine's processes
        # taken then must not see a shell that later becomes the agent)
        subprocess.Popen([sys.executable, "-m", "lab.power", lab.name, str(lab.dir)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, preexec_fn=cgroup.joiner(), env=env, cwd="/")
    finally:
        log.close()


def take_request(node: Node) -> tuple[str, str] | None:
    """The node's pending power request (verb, how), removed as it is taken."""
    try:
        path = node.path(REQUEST)
        text = path.read_text()
        path.unlink()
    except (FileNotFoundError, OSError):
        return None
    verb, _, how = text.strip().partition(" ")
    return verb, how or "orderly"


def carry_out(node: Node, verb: str, how: str) -> None:
    node.lab.log_event("node.power_request", node=node.name, verb=verb, how=how)
    if verb == "reboot" and how == "force":
        node.crash()
        node.start()
    elif verb == "reboot":
        node.reboot()
    elif how == "force":
        node.crash()
    else:
        node.shutdown()


def agent(name: str, lab_dir: Path) -> None:
    """Poll every node's request file; import the lab machinery only when one arrives (the
    agent idles at a few MiB instead of carrying pyroute2 and the stacks all the time)."""
    requests = lab_dir / "nodes"
    while lab_dir.exists():
        for path in requests.glob(f"*/fs{REQUEST}"):
            from lab.lab import Lab

            node = Lab.attach(name)[path.parents[len(Path(REQUEST).parts) - 1].name]
            request = take_request(node)
            if request is None:
                continue
            print(json.dumps({"t_mono": time.monotonic(), "node": node.name,
                              "request": request}), flush=True)
            try:
                carry_out(node, *request)
            except Exception as exc:  # keep serving the other nodes; say what failed
                print(json.dumps({"t_mono": time.monotonic(), "node": node.name,
                                  "error": repr(exc)}), flush=True)
        time.sleep(POLL_S)


if __name__ == "__main__":
    agent(sys.argv[1], Path(sys.argv[2]))
