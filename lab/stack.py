"""The seam between the lab's machines and the services that run on them.

A `Stack` plays the part of each node's init system: the lab calls `prepare` once before any
node boots (to write the configuration onto the nodes' disks), `boot_all` when the whole lab
powers on, `boot` whenever one node powers on later,
`halt` when it is shut down in an orderly way, and `after_crash` when it lost power (for host-side
leftovers such as loop devices). A bare lab has no stack: just machines and wires.
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node
    from lab.topology import Topology

# stack name -> "module:factory"; the factory takes the profile name
STACKS: dict[str, str] = {
    "seed": "lab.services.stack:SeedStack",
}


class Stack:
    name = "none"

    def prepare(self, lab: Lab) -> None:
        """Write every node's configuration before the first boot."""

    def boot(self, node: Node) -> None:
        """The node just powered on and is wired: start what its init would start."""

    def boot_all(self, nodes: list[Node]) -> dict[str, float]:
        """`lab up`: every node just powered on and wired, boot them all; returns each node's
        boot seconds. By default one at a time, in the order given (the topology's)."""
        seconds: dict[str, float] = {}
        for node in nodes:
            began = time.monotonic()
            self.boot(node)
            seconds[node.name] = time.monotonic() - began
        return seconds

    def halt(self, node: Node) -> None:
        """Orderly shutdown: stop services so that the peer can take over cleanly."""

    def after_crash(self, node: Node) -> None:
        """The node lost power: clean up host-side resources it held."""

    def options_record(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this stack in another process (kept in lab.json)."""
        return {}

    def check(self, topology: Topology) -> list[str]:
        """Problems that must stop `lab up` before anything is created (``file:line: ...``)."""
        return []

    def wait_ready(self, lab: Lab, timeout: float = 180.0) -> float:
        """Block until the services serve; return how long that took (0 for no services)."""
        return 0.0

    def status(self, lab: Lab) -> dict[str, Any]:
        """Extra keys for `lab status --json`."""
        return {}


def make_stack(name: str, profile: str, **options: Any) -> Stack | None:
    if name == "none":
        return None
    try:
        target = STACKS[name]
    except KeyError:
        raise ValueError(f"unknown stack {name!r} (known: none, {', '.join(STACKS)})") from None
    module_name, _, factory = target.partition(":")
    module = importlib.import_module(module_name)
    stack: Stack = getattr(module, factory)(profile, **options)
    return stack


def available_stacks() -> list[str]:
    names = ["none"]
    for name, target in STACKS.items():
        try:
            importlib.import_module(target.partition(":")[0])
        except ImportError:
            continue
        names.append(name)
    return names
