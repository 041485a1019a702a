"""A node of the lab: a container with a NixOS-test-driver-style API.

`Node` is what scenarios and the CLI talk to: run commands (`execute`, `succeed`, `fail`, waits),
and inflict the faults a physical machine can suffer (`crash`, `shutdown`, `reboot`, `freeze`,
`block`). It knows nothing about services; a `Stack` (lab/stack.py) is told when the node boots
and halts, the way init scripts are.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import container
from lab.backend import Launch
from lab.cgroup import Cgroup
from lab.container import ContainerSpec
from lab.state import ProcessRef
from lab.topology import Node as NodeSpec
from lab.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from lab.lab import Lab

ROLE_SYSCTLS: dict[str, dict[str, str]] = {
    "router": {
        "net/ipv4/ip_forward": "1",
        "net/ipv6/conf/all/forwarding": "1",
        "net/ipv6/conf/default/forwarding": "1",
    },
    # clients that grow macvlans for the DHCP fleet must answer ARP only for their own address
    "client": {
        "net/ipv4/conf/all/arp_ignore": "1",
        "net/ipv4/conf/all/arp_announce": "2",
        "net/ipv4/conf/default/arp_ignore": "1",
        "net/ipv4/conf/default/arp_announce": "2",
    },
}


class NodeError(RuntimeError):
    """A node cannot do what was asked in the state it is in (or failed doing it)."""


class NodeInputError(NodeError, ValueError):
    """What was asked names nothing the node has (a port or interface it lacks)."""


@dataclass
class Runtime:
    """What a running node's container is, persisted so another `lab` process can reach it."""

    unshare_pid: int
    unshare_start: int
    init_pid: int
    init_start: int
    started_mono: float
    container: str | None = None  # the backend's name for the machine (docker: its ID)
    cgroup: str | None = None  # the cgroup holding the machine, where the backend chose it


class Node:
    def __init__(self, lab: Lab, spec: NodeSpec) -> None:
        self.lab = lab
        self.spec = spec
        self.name = spec.name
        self.dir = lab.dir / "nodes" / spec.name
        self.backend = lab.backend
        self._popen: subprocess.Popen[bytes] | None = None
        self._host: Any = None

    def __repr__(self) -> str:
        return f"<Node {self.lab.name}/{self.name} {self.state}>"

    # -- identity and state -----------------------------------------------------------------------
    @property
    def cgroup(self) -> Cgroup:
        """The cgroup holding every process of the node (its backend says which)."""
        return self.backend.cgroup(self)

    @property
    def python(self) -> str:
        """The interpreter that runs the lab's node-side code inside this node."""
        return self.backend.python

    @property
    def container_spec(self) -> ContainerSpec:
        return ContainerSpec(hostname=self.name, fs_root=self.dir / "fs",
                             console=self.dir / "console.log",
                             cgroup=Cgroup.for_node(self.lab.name, self.name),
                             sysctls=ROLE_SYSCTLS.get(self.spec.role, {}),
                             source_root=self.backend.source_root(self))

    @property
    def runtime(self) -> Runtime | None:
        try:
            data = json.loads((self.dir / "runtime.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        runtime = Runtime(**data)
        if not ProcessRef(runtime.init_pid, runtime.init_start).alive():
            return None
        return runtime

    @property
    def state(self) -> str:
        if self.runtime is None:
            return "stopped"
        return "frozen" if self.cgroup.frozen() else "running"

    @property
    def init_pid(self) -> int:
        return self._require_running().init_pid

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.init_pid}/ns/net"

    def path(self, container_path: str) -> Path:
        """Host-side path of a file the node keeps across crashes (/etc/ha.d/..., /srv/...)."""
        persistent = [p for p, _ in container.PERSISTENT_DIRS + container.PERSISTENT_FILES]
        for prefix in sorted(persistent, key=len, reverse=True):
            if container_path == prefix or container_path.startswith(prefix.rstrip("/") + "/"):
                return self.container_spec.host_path(container_path)
        raise NodeError(f"{container_path} is not in one of {self.name}'s persistent paths "
                        f"({', '.join(persistent)}); use execute() for volatile files")

    @property
    def root(self) -> Path:
        """The node's whole filesystem as it sees it, readable from the host even while frozen
        (``/proc/PID/root``), e.g. ``node.root / "run/heartbeat"``."""
        return Path(f"/proc/{self.init_pid}/root")

    @property
    def log_dir(self) -> Path:
        return self.path("/var/log")

    # -- lifecycle --------------------------------------------------------------------------------
    # Every verb either does what it says, answers False ("nothing to do") where asking twice is
    # natural (freeze, thaw, block, unblock), or refuses with a NodeError before it touches
    # anything. Power verbs that fail part-way still end with the node whole: stopped (no
    # process, no frozen cgroup, no wiring) or as it was.
    def start(self, settle: bool = True) -> None:
        """Power on: a fresh container, its cables plugged in, then the stack boots it.

        With `settle`, the kernel makes the node's link-locals and runs duplicate address
        detection on them, and this returns once it finished (~1 s), as a booting machine is
        "up" only then; its peers' stale neighbour entries have retried meanwhile. Without, the
        lab adds the same link-locals without DAD and nothing is awaited (lab/net.py).
        Refused while the node is up (running or frozen). Leftovers of a power-off that did not
        finish (a frozen cgroup, processes, switch ports) are cleared first, so a new PID 1 never
        lands in a frozen cgroup; if the machine fails to come up, it is left stopped."""
        if self.runtime is not None:
            raise NodeError(f"{self.name} is already up ({self.state})")
        self._clear_leftovers()
        self.lab.records.add("cgroup", path=str(self.cgroup.path))
        try:
            self._power_on(settle)
        except BaseException:
            self._power_off()
            raise
        if self.lab.stack is not None:
            self.lab.stack.boot(self)

    def _power_on(self, settle: bool) -> None:
        self._finish_power_on(self._launch(), settle)

    def _launch(self) -> Launch:
        """Start the node's container without waiting for it: `Lab.up` starts every node's
        side by side, then finishes each with `_finish_power_on`. The backend records the
        machine the instant it exists (the namespace backend's `unshare` is in the node's
        cgroup already)."""
        launch = self.backend.launch(self)
        self._popen = getattr(launch, "popen", None)
        return launch

    def _finish_power_on(self, launch: Launch, settle: bool) -> None:
        """Wait for the container's PID 1, save the runtime record, plug the cables in."""
        running = launch.ready()
        ready = launch.ready_mono or time.monotonic()
        runtime = Runtime(running.unshare_pid, _ticks(running.unshare_pid), running.init_pid,
                          _ticks(running.init_pid), ready, running.container, running.cgroup)
        self._save(runtime)
        wiring = time.monotonic()
        self.lab.fabric.wire(self.spec, running.init_pid, running.netns_path, quick=not settle)
        self.lab.log_event("node.start", node=self.name,
                           container_s=round(ready - launch.started_mono, 4),
                           wire_s=round(time.monotonic() - wiring, 4))
        if settle:
            self.wait_settled()

    def _clear_leftovers(self) -> None:
        """Make a stopped node's cgroup empty and thawed and its switch ports gone."""
        pids = self.cgroup.pids()
        if pids or self.cgroup.frozen():
            self.lab.log_event("node.start.leftovers", node=self.name, processes=len(pids),
                               frozen=self.cgroup.frozen())
        self._power_off()

    def wait_settled(self, timeout: float = 10) -> None:
        from lab.net import tentative_addresses
        wait_for(lambda: tentative_addresses(self.netns_path), until=lambda left: not left,
                 timeout=timeout, what=f"{self.name}: IPv6 duplicate address detection to finish")

    def crash(self) -> None:
        """Power loss: off the wire and every process gone in the same instant; no shutdown.

        Refused on a stopped node. Once begun, a crash always ends with the node stopped --
        every process gone, the cgroup thawed, the wiring removed -- even if a step on the way
        fails (that error is raised afterwards), so a later `start` finds nothing in its way."""
        self._require_running()
        self.lab.log_event("node.crash", node=self.name)
        try:
            self._freeze_for_crash()
            self._unplug_for_crash()
        finally:
            self._power_off()
        if self.lab.stack is not None:
            self.lab.stack.after_crash(self)

    def _freeze_for_crash(self) -> None:
        """A machine without power runs no more code: freeze every process first. A task stuck
        in uninterruptible sleep (e.g. on the node's own FUSE daemon, frozen first) can hold the
        freezer up; power is cut anyway, and the lab's event log says so."""
        started = time.monotonic()
        try:
            self.cgroup.freeze(timeout=0.5)
        except TimeoutError:
            self.lab.log_event("node.crash.freeze_incomplete", node=self.name,
                               waited_s=round(time.monotonic() - started, 3))

    def _unplug_for_crash(self) -> None:
        """The cables go out before processes die (NO-CARRIER: whatever still runs sends into
        the void, as on a dead machine, instead of failing with `No such device` on a vanished
        link -- seen in heartbeat's log when the freezer had not caught its writer). A wiring
        that cannot be unplugged is logged and removed with the rest of the node."""
        try:
            self.lab.fabric.set_cable(self.spec, None, plugged=False)
        except Exception as exc:  # the crash goes on: power off removes the wiring anyway
            self.lab.log_event("node.crash.unplug_failed", node=self.name, error=str(exc))

    def shutdown(self) -> None:
        """Orderly power-off: the stack stops services first (heartbeat hands over).

        A frozen node is thawed first (its services must run to stop). Refused on a stopped
        node. If the stack's halt fails, the node is still powered off, then the error raised."""
        self._require_running()
        self.lab.log_event("node.shutdown", node=self.name)
        if self.cgroup.frozen():
            self.backend.thaw(self)
        try:
            if self.lab.stack is not None:
                self.lab.stack.halt(self)
        finally:
            self._power_off()

    def reboot(self) -> None:
        """Orderly power cycle. Refused on a stopped node (`start` powers it on). Cables come
        back plugged: a node's wiring is made afresh at every start."""
        self._require_running(": start it instead")
        self.shutdown()
        self.start()

    def freeze(self) -> bool:
        """Stop every process of the node at once (the kernel freezer); the network stays up.

        Returns False if the node was frozen already; refused on a stopped node. If the freezer
        cannot catch every task within 5 s (one in uninterruptible sleep), the node is thawed
        again and NodeError raised: it is never left half-frozen."""
        self._require_running()
        if self.cgroup.frozen():
            return False
        self.lab.log_event("node.freeze", node=self.name)
        try:
            self.backend.freeze(self)
        except TimeoutError as exc:
            self.backend.thaw(self)
            self.lab.log_event("node.thaw", node=self.name, why="freeze incomplete")
            raise NodeError(f"{self.name}: the freezer could not stop every process within 5 s "
                            f"(a task in uninterruptible sleep?); thawed again ({exc})") from None
        return True

    def thaw(self) -> bool:
        """Let a frozen node run on. Returns False if it was not frozen; refused on a stopped
        node."""
        self._require_running()
        if not self.cgroup.frozen():
            return False
        self.backend.thaw(self)
        self.lab.log_event("node.thaw", node=self.name)
        return True

    def block(self, name: str | None = None) -> bool:
        """Pull a cable (a port name, or every cable with no name) or take one VLAN off the
        switch port (an interface name that is not a port, e.g. ``enp2s1.3``).

        Returns False if it was off already. A name that is neither a port nor an interface is
        a NodeInputError; a stopped node (no cables at all) is refused."""
        return self._cable_or_vlan(name, connected=False)

    def unblock(self, name: str | None = None) -> bool:
        """Undo `block`; returns False if there was nothing to undo."""
        return self._cable_or_vlan(name, connected=True)

    def block_vlan(self, iface: str) -> bool:
        """Take one VLAN off the switch port even when it is the port's untagged one; returns
        False if it was off already."""
        return self._set_vlan(iface, attached=False)

    def unblock_vlan(self, iface: str) -> bool:
        return self._set_vlan(iface, attached=True)

    def _cable_or_vlan(self, name: str | None, connected: bool) -> bool:
        if name is not None and name not in {p.name for p in self.spec.ports}:
            return self._set_vlan(name, attached=connected)
        self._require_running()
        changed = self._rewire(lambda: self.lab.fabric.set_cable(self.spec, name,
                                                                 plugged=connected))
        if changed:
            self.lab.log_event("cable.plug" if connected else "cable.pull", node=self.name,
                               port=name)
        return changed

    def _set_vlan(self, iface: str, attached: bool) -> bool:
        self._check_interface(iface)
        self._require_running()
        changed = self._rewire(lambda: self.lab.fabric.set_vlan(self.spec, iface,
                                                                attached=attached))
        if changed:
            self.lab.log_event("vlan.heal" if attached else "vlan.cut", node=self.name,
                               iface=iface)
        return changed

    def _check_interface(self, name: str) -> None:
        if name not in {i.name for i in self.spec.interfaces}:
            raise NodeInputError(f"{self.name} has no port or interface {name!r} (ports: "
                                 f"{', '.join(sorted(p.name for p in self.spec.ports))}; "
                                 "interfaces: "
                                 f"{', '.join(i.name for i in self.spec.interfaces)})")

    def _rewire(self, change: Callable[[], bool]) -> bool:
        """Run a wiring change; a node whose wiring is incomplete is a NodeError (the fabric
        checks every link before it touches one, so nothing was changed)."""
        from lab.net import WiringError
        try:
            return change()
        except WiringError as exc:
            raise NodeError(str(exc)) from None

    def _power_off(self) -> None:
        """Whatever state the node is in (even half-started): every process gone, the cgroup
        thawed, the switch side of its cables removed, no runtime record. Each step runs even
        if an earlier one failed."""
        try:
            self._kill()
        finally:
            try:
                self.lab.fabric.unwire(self.spec)
            finally:
                if self.cgroup.exists() and self.cgroup.frozen():
                    self.cgroup.thaw()  # an empty frozen cgroup would freeze the next PID 1

    def _kill(self) -> None:
        # PID 1 first: the kernel then kills the whole PID namespace and `unshare` reaps PID 1,
        # instead of both dying at once and leaving PID 1 a zombie for the host's init to reap
        from lab import fuse
        fuse_ids = fuse.connections_of(self.cgroup.pids())
        runtime = self.runtime
        if runtime is not None:
            ProcessRef(runtime.init_pid, runtime.init_start).kill()
            if self.cgroup.frozen():
                # every process of the node gets its SIGKILL while still frozen, so none runs
                # one more instruction on thaw (PID 1's death alone reaches the others only when
                # the kernel tears the PID namespace down, after they ran a little: heartbeat
                # logged from a crashed node that way); `unshare`, outside the namespace, is
                # left to reap PID 1
                self.cgroup.sigkill(spare=runtime.unshare_pid)
                self.cgroup.thaw()
            unshare = ProcessRef(runtime.unshare_pid, runtime.unshare_start)
            with suppress(WaitTimeout):
                wait_for(lambda: exited(unshare) or self._reaped(), timeout=2,
                         what=f"{self.name}: unshare to exit")
        cgroup = self.cgroup
        cgroup.kill_all(fuse_ids=fuse_ids)
        if self._popen is not None:
            self._popen.wait(timeout=10)
            self._popen = None
        self.backend.discard(self)
        (self.dir / "runtime.json").unlink(missing_ok=True)

    def _reaped(self) -> bool:
        """Reap our own `unshare` child if it exited (it is a zombie until then)."""
        return self._popen is not None and self._popen.poll() is not None

    def _require_running(self, hint: str = "") -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise NodeError(f"{self.name} is not running (stopped){hint}")
        return runtime

    def _refuse_frozen(self, what: str) -> None:
        """A process started in a frozen node blocks before it runs (it joins the frozen
        cgroup), and with it whoever waits for it to start: refuse instead."""
        if self.cgroup.frozen():
            raise NodeError(f"{self.name} is frozen: {what} cannot run until it is thawed")

    def _save(self, runtime: Runtime) -> None:
        tmp = self.dir / "runtime.json.tmp"
        tmp.write_text(json.dumps(asdict(runtime)))
        os.replace(tmp, self.dir / "runtime.json")

    # -- running commands -------------------------------------------------------------------------
    def argv(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` inside this node (not in its cgroup)."""
        return container.exec_argv(self.init_pid, argv)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """A long-running process inside the node, in its cgroup (frozen and killed with it).
        Refused on a frozen node (see `_refuse_frozen`)."""
        init_pid = self.init_pid
        self._refuse_frozen(f"`{shlex.join(argv)}`")
        return container.popen_in(init_pid, self.cgroup, argv, **kwargs)

    def execute(self, command: str, timeout: float | None = 60,
                input: str | None = None) -> tuple[int, str]:
        """Run a shell command inside the node; return (exit status, stdout+stderr). Refused
        at once on a frozen node, which would only hold the command until `timeout`."""
        init_pid = self.init_pid
        self._refuse_frozen(f"`{command}`")
        try:
            result = container.run_in(init_pid, self.cgroup, ["sh", "-c", command],
                                      timeout=timeout, input=input)
        except subprocess.TimeoutExpired as exc:
            out = exc.output if isinstance(exc.output, str) else ""
            raise NodeError(f"{self.name}: `{command}` did not finish within {timeout} s; "
                            f"output so far: {out[-500:]!r}") from None
        return result.returncode, result.stdout

    def succeed(self, command: str, timeout: float | None = 60) -> str:
        rc, out = self.execute(command, timeout)
        if rc != 0:
            raise NodeError(f"{self.name}: `{command}` failed with status {rc}: {out.strip()}")
        return out

    def fail(self, command: str, timeout: float | None = 60) -> str:
        rc, out = self.execute(command, timeout)
        if rc == 0:
            raise NodeError(f"{self.name}: `{command}` unexpectedly succeeded: {out.strip()}")
        return out

    def wait_until_succeeds(self, command: str, timeout: float = 30) -> str:
        _, out = wait_for(lambda: self.execute(command, timeout=max(timeout, 1)),
                          until=lambda result: result[0] == 0, timeout=timeout,
                          what=f"{self.name}: `{command}` to succeed")
        return out

    def wait_until_fails(self, command: str, timeout: float = 30) -> str:
        _, out = wait_for(lambda: self.execute(command, timeout=max(timeout, 1)),
                          until=lambda result: result[0] != 0, timeout=timeout,
                          what=f"{self.name}: `{command}` to fail")
        return out

    def listening(self, port: int, proto: str = "tcp") -> bool:
        flag = {"tcp": "t", "udp": "u"}.get(proto)
        if flag is None:
            raise ValueError(f"proto must be tcp or udp, not {proto!r}")
        rc, out = self.execute(f"ss -Hln{flag} {shlex.quote(f'sport = :{port}')}")
        return rc == 0 and bool(out.strip())

    def wait_for_open_port(self, port: int, proto: str = "tcp", timeout: float = 30) -> None:
        wait_for(lambda: self.listening(port, proto), timeout=timeout,
                 what=f"{self.name}: something listening on {port}/{proto}")

    def processes(self) -> list[tuple[int, str]]:
        """(host PID, command line) of every process in the node's cgroup."""
        result = []
        for pid in self.cgroup.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                continue
            result.append((pid, cmd.strip()))
        return result

    def addresses(self) -> dict[str, list[str]]:
        from lab.net import node_addresses
        return node_addresses(self.netns_path)

    @property
    def host(self) -> Any:
        """A testinfra Host whose commands run inside this node."""
        if self._host is None:
            from lab.testinfra_backend import host_for
            self._host = host_for(self)
        return self._host


def _ticks(pid: int) -> int:
    return ProcessRef.of(pid).start


def exited(ref: ProcessRef) -> bool:
    """Whether the process has exited (see `ProcessRef.exited`)."""
    return ref.exited()
