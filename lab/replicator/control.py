"""The control socket ``drbdadm`` talks to: one JSON request per connection, one JSON reply.

Why a reply always carries the whole state: drbdadm prints DRBD's outputs (``role``,
``cstate``, ``status``) from it, so one round trip answers any verb.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from lab.replicator import device, wire

if TYPE_CHECKING:
    from lab.replicator.core import Replicator


class CommandError(Exception):
    """A refused command: ``rc`` and the DRBD-style message drbdadm prints."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc


class Control:
    def __init__(self, r: Replicator) -> None:
        self.r = r

    def server(self) -> None:
        path = self.r.ctl_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(8)
        while not self.r.stopping:
            conn, _ = srv.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        r = self.r
        with conn:
            buf = wire.recv_line(conn)
            if not buf:
                return
            req = json.loads(buf)
            try:
                out = self.command(req)
                reply: dict[str, Any] = {"rc": 0, "state": r.state(), **out}
            except CommandError as e:
                reply = {"rc": e.rc, "err": str(e), "state": r.state()}
            except Exception as e:  # report, never crash the daemon on a bad request
                reply = {"rc": 20, "err": f"{type(e).__name__}: {e}", "state": r.state()}
            conn.sendall(json.dumps(reply).encode() + b"\n")
            if req.get("cmd") == "down" and reply["rc"] == 0:
                self.shutdown()

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.r
        cmd = req.get("cmd")
        if cmd == "status":
            return {}
        if cmd == "primary":
            r.roles.primary(bool(req.get("force")))
        elif cmd == "secondary":
            r.roles.secondary()
        elif cmd == "connect":
            if r.md is None:
                raise CommandError(10, "Failure: (138) Device has no disk")
            r.conn.connect(bool(req.get("discard_my_data")))
        elif cmd == "disconnect":
            r.conn.disconnect()
        elif cmd == "detach":
            if r.role == "Primary" and not r.connected():
                raise CommandError(11, "State change failed: (-2) Need access to UpToDate "
                                       "data")
            r.disk.detach("detach requested")
        elif cmd == "attach":
            if r.fd is None:
                r.disk.attach()
        elif cmd == "invalidate":
            if not r.connected() or r.pdsk != "UpToDate":
                raise CommandError(11, "State change failed: (-15) Need a connection to start "
                                       "verify or resync")
            md = r.md
            assert md is not None
            md.set_all()
            r.set_state(dstate="Inconsistent")
            link = r.conn.link
            if link is not None:
                r.conn.link_lost(link, "invalidate: resync from peer")
        elif cmd == "resize":
            return r.resize.command()
        elif cmd == "verify":
            r.verify.start()
        elif cmd == "ping":
            return {"rtt_ms": self._ping(int(req.get("count", 100)))}
        elif cmd == "threads":  # diagnostics: where every thread is right now
            import traceback

            frames = sys._current_frames()
            return {"threads": {t.name: "".join(traceback.format_stack(frames[t.ident])[-6:])
                                for t in threading.enumerate() if t.ident in frames}}
        elif cmd == "io-error":
            r.disk.io_error_injected = bool(req.get("on", True))
        elif cmd == "down":
            if r.role == "Primary":
                r.roles.secondary()
            r.conn.disconnect()
        else:
            raise CommandError(20, f"unknown command {cmd!r}")
        return {}

    def _ping(self, count: int) -> dict[str, float]:
        """Round trips through the path a write's request takes (for the bench)."""
        r = self.r
        rtts = []
        for _ in range(count):
            link = r.conn.link
            if link is None:
                raise CommandError(10, "not connected")
            t0 = time.perf_counter()
            if not r.conn.wait(r.conn.request(link, wire.PING, b"", 0, range(0))):
                raise CommandError(10, "ping failed")
            rtts.append((time.perf_counter() - t0) * 1000)
        rtts.sort()
        return {"median": round(rtts[len(rtts) // 2], 3),
                "p99": round(rtts[int(len(rtts) * 0.99)], 3)}

    def shutdown(self) -> None:
        r = self.r
        r.stopping = True
        device.remove_node(r.me.device)
        r.events.emit("down", role=r.role, cstate="Unconfigured", dstate="Unconfigured")
        os.kill(os.getpid(), signal.SIGTERM)  # the FUSE loop leaves and unmounts
