"""testinfra, pointed inside a node: a backend only has to know how to run a command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import testinfra.backend.base
import testinfra.host

if TYPE_CHECKING:
    from lab.node import Node


class NodeBackend(testinfra.backend.base.BaseBackend):  # type: ignore[misc]
    NAME = "hapair-lab"

    def __init__(self, node: Node, *args: Any, **kwargs: Any) -> None:
        self.node = node
        super().__init__(node.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        rc, out = self.node.execute(cmd)
        return self.result(rc, self.encode(cmd), out.encode(), b"")


def host_for(node: Node) -> Any:
    return testinfra.host.Host(NodeBackend(node))
