"""What a node's machine is made of: the interface `Node` talks to, and its first
implementation, the namespace backend (lab/container.py: the host's own userland seen through
private directories).

A backend makes a node's machine (`launch`), says which cgroup holds its processes, freezes and
thaws it, and clears what is left of it once its processes are dead (`discard`). Everything
else -- wiring, faults, commands through `nsenter`, killing by cgroup, the stack -- is the same
for every backend, because every backend's machine is a set of namespaces with a PID 1 on this
host. The docker backend (lab/docker_backend.py) is the second implementation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lab import container
from lab.cgroup import Cgroup

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node

BACKENDS = ("namespace", "docker")
DEFAULT_BACKEND = "namespace"


class BackendError(RuntimeError):
    """The backend cannot make machines here (the message says why and what to do)."""


class Launch(Protocol):
    """A machine being started: `ready()` waits for its PID 1."""

    started_mono: float
    ready_mono: float | None

    def ready(self, timeout: float = 10.0) -> container.Running: ...


class NodeBackend(Protocol):
    name: str
    image: str | None

    @property
    def python(self) -> str:
        """The interpreter node-side code (replicator, probes, ...) runs with."""

    def prepare(self, lab: Lab) -> None:
        """Before any node of the lab is made (e.g. the engine answers, the image exists)."""

    def provision(self, node: Node) -> None:
        """Before the node's persistent files are first written."""

    def source_root(self, node: Node) -> Path:
        """Where a node's persistent files are first copied from."""

    def launch(self, node: Node) -> Launch:
        """Start the node's machine without waiting for it; record it first."""

    def cgroup(self, node: Node) -> Cgroup:
        """The cgroup holding every process of the node's machine."""

    def freeze(self, node: Node) -> None:
        """Stop every process of the node (TimeoutError if the kernel cannot)."""

    def thaw(self, node: Node) -> None: ...

    def discard(self, node: Node) -> None:
        """Clear what is left of a machine whose processes are all dead."""

    def describe(self, node: Node) -> dict[str, Any]:
        """What `lab status` shows about the node's machine."""

    def versions(self, lab: Lab) -> dict[str, str]:
        """The Debian versions of the daemons the lab's nodes run, where they are not the
        host's installed packages (empty: the host's)."""


class NamespaceBackend:
    """Namespaces made by `unshare` around the host's own userland (lab/container.py)."""

    name = "namespace"
    image: str | None = None

    @property
    def python(self) -> str:
        return sys.executable

    def prepare(self, lab: Lab) -> None:
        pass

    def provision(self, node: Node) -> None:
        pass

    def source_root(self, node: Node) -> Path:
        return Path("/")

    def launch(self, node: Node) -> Launch:
        launch = container.launch(node.container_spec)
        node.lab.records.add("process", pid=launch.popen.pid,
                             start=_start_ticks(launch.popen.pid),
                             what=f"unshare {node.name}")
        return launch

    def cgroup(self, node: Node) -> Cgroup:
        return Cgroup.for_node(node.lab.name, node.name)

    def freeze(self, node: Node) -> None:
        node.cgroup.freeze()

    def thaw(self, node: Node) -> None:
        node.cgroup.thaw()

    def discard(self, node: Node) -> None:
        pass

    def describe(self, node: Node) -> dict[str, Any]:
        return {}

    def versions(self, lab: Lab) -> dict[str, str]:
        return {}


def make_backend(name: str, image: str | None = None) -> NodeBackend:
    if name == "namespace":
        if image:
            raise ValueError("--image needs --backend docker")
        return NamespaceBackend()
    if name == "docker":
        from lab.docker_backend import DockerBackend
        return DockerBackend(image)
    raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


def _start_ticks(pid: int) -> int:
    from lab.state import ProcessRef
    return ProcessRef.of(pid).start
