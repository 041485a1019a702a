"""The replicator's event stream: JSON lines like ``drbdsetup events2``, for the timeline.

Each line carries ``t_mono`` (CLOCK_MONOTONIC, system-wide, so it lines up with probes and
fault events), the resource, and the full state after the change, so a reader never needs
earlier lines to know where things stand. Secrets never reach it: callers pass states and
decisions only, and ``emit`` drops any key that looks like one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

_SECRET_KEYS = ("secret", "password", "shared-secret")


class EventLog:
    def __init__(self, path: str, resource: str, node: str) -> None:
        self.path = path
        self.resource = resource
        self.node = node
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "t_mono": time.clock_gettime(time.CLOCK_MONOTONIC),
            "resource": self.resource,
            "node": self.node,
            "event": event,
        }
        rec.update({k: v for k, v in fields.items()
                    if not any(s in k.lower() for s in _SECRET_KEYS)})
        line = json.dumps(rec, sort_keys=False) + "\n"
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        return rec
