"""A peer for `make bench`: Mininet building the same six hosts on one Linux bridge.

Why Mininet: it is the usual tool for "a network of namespaces on one machine", so its build and
teardown times are the yardstick for a bare lab's. The comparison is Mininet's own Python API
(Debian's `mininet` package, run by Debian's python3), `SingleSwitchTopo(6)` on a `LinuxBridge`
with no controller, timed in-process (build+start, stop) and as a whole process -- beside the
lab's bare `lab up` / `lab down`, run in the same bench run, so the ratios compare numbers taken
under the same load.

Mininet keeps its switch and the host ends of its veths in the namespace it runs in, and
`Mininet.init()` raises host-wide sysctls (kernel.pty.max, fs.file-max). Neither may touch this
machine's root namespace, so every run happens inside namespaces made for it alone
(`unshare --net --mount --pid --fork`): its bridge and veths die with the private network
namespace, its host shells with the private PID namespace, and the sysctl step is skipped
(`Mininet.inited = True`). Nothing is left that `mn -c` would have to clean; the bench checks
the root namespace's links, addresses, routes, named netns and mounts before and after.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's mininet lives in its dist-packages
HOSTS = 6

DRIVER = """
import json, sys, time
t0 = time.monotonic()
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo
Mininet.inited = True  # skip fixLimits(): host-wide sysctls
t1 = time.monotonic()
net = Mininet(topo=SingleSwitchTopo(int(sys.argv[1])), switch=LinuxBridge, controller=None,
              build=False)
net.build()
net.start()
t2 = time.monotonic()
loss = net.pingAll(timeout=1) if sys.argv[2] == "ping" else None
t3 = time.monotonic()
net.stop()
t4 = time.monotonic()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "stop_s": t4 - t3,
                  "ping_loss_percent": loss}))
"""

ISOLATION = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", "--"]


def available() -> str | None:
    """None if Mininet can run here, else why not."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} missing"
    for tool in ("mnexec", "brctl", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} missing (Debian packages mininet, bridge-utils)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import mininet.net"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return f"mininet does not import: {probe.stderr.strip()[-200:]}"
    return None


def run_once(hosts: int = HOSTS, ping: bool = False, timeout: float = 120) -> dict[str, Any]:
    """One isolated Mininet run: in-process figures plus the whole process's wall time."""
    started = time.monotonic()
    done = subprocess.run([*ISOLATION, SYSTEM_PYTHON, "-c", DRIVER, str(hosts),
                           "ping" if ping else "-"], capture_output=True, text=True,
                          timeout=timeout, cwd="/")
    wall = time.monotonic() - started
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"mininet run failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_s"] = wall
    return result


def root_namespace() -> dict[str, frozenset[str]]:
    """What Mininet must leave exactly as it was: the root namespace's network and mounts."""
    from lab import rootns
    snap = rootns.snapshot()
    return {"links": snap.links, "addresses": snap.addresses, "routes": snap.routes,
            "named_netns": snap.named_netns, "mounts": snap.mounts}


def changed(before: dict[str, frozenset[str]], after: dict[str, frozenset[str]]) -> list[str]:
    """Each difference as `field: appeared|vanished: item` (pure)."""
    problems = []
    for key in before:
        problems += [f"{key}: appeared: {x}" for x in sorted(after[key] - before[key])]
        problems += [f"{key}: vanished: {x}" for x in sorted(before[key] - after[key])]
    return problems


if __name__ == "__main__":
    print(json.dumps(run_once(ping=True), indent=2))
