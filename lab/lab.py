"""A lab: one switch, the topology's nodes, and the records that let it be removed.

`Lab.create()` makes a new lab (refusing a name in use), `up()` powers it on, `down()` removes
every trace. `Lab.attach()` reopens a running lab from its state directory, so `lab crash lsvm2`
in one terminal acts on the lab `lab up` started in another.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from lab import container, power, recovery, roles
from lab.backend import DEFAULT_BACKEND, Launch, NodeBackend, make_backend
from lab.cgroup import Cgroup
from lab.container import ContainerSpec
from lab.net import Fabric, NetworkMode, detect_mode_cached
from lab.node import Node
from lab.recovery import Recovery
from lab.stack import Stack, make_stack
from lab.state import (
    LabStateError,
    ProcessRef,
    Records,
    check_lab_name,
    lab_root,
    labs_dir,
    make_labs_dir,
    teardown,
)
from lab.topology import Topology, load_topology
from lab.wait import wait_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEFAULT_TOPOLOGY = FIXTURES / "topology.toml"
PROFILES = ("seed", "fast")

Progress = Callable[[str], None]


class LabExists(LabStateError):
    pass


class LabNotFound(LabStateError):
    pass


class ConfigurationError(ValueError):
    """The services' configuration does not pass its lint; `problems` are its lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Lab:
    def __init__(self, name: str, topology: Topology, profile: str, stack: Stack | None,
                 stack_name: str, backend: NodeBackend | None = None) -> None:
        self.name = name
        self.topology = topology
        self.profile = profile
        self.stack = stack
        self.stack_name = stack_name
        self.backend = backend or make_backend(DEFAULT_BACKEND)
        self.dir = labs_dir() / name
        self.records = Records(self.dir)
        self.nodes = {n: Node(self, spec) for n, spec in topology.nodes.items()}
        self._fabric: Fabric | None = None
        self._switch_popen: Any = None
        # state checks the scenario's own ending breaks on purpose (see expect_settled)
        self.audit_accepts: set[str] = set()

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"lab {self.name} has no node {name!r} (nodes: "
                           f"{', '.join(self.nodes)})") from None

    def __getattr__(self, name: str) -> Node:
        nodes = self.__dict__.get("nodes", {})
        if name in nodes:
            return nodes[name]  # type: ignore[no-any-return]
        raise AttributeError(name)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __repr__(self) -> str:
        return (f"<Lab {self.name} profile={self.profile} stack={self.stack_name} "
                f"backend={self.backend.name}>")

    # -- creation ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, topology: Topology | None = None, profile: str = "fast",
               stack: str = "none", backend: str | None = None, image: str | None = None,
               **stack_options: Any) -> Lab:
        """Claim `name` and write the lab's identity; nothing runs yet. The stack's own check
        (`lab lint` for the seed) runs first: a broken configuration creates nothing. The
        backend (namespace or docker, with its image; default $LAB_BACKEND and $LAB_IMAGE) is
        the lab's for its whole life."""
        check_lab_name(name)
        backend = backend or os.environ.get("LAB_BACKEND") or DEFAULT_BACKEND
        if backend != "namespace":
            image = image or os.environ.get("LAB_IMAGE") or None
        backend_obj = make_backend(backend, image)
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        topology = topology or load_topology(DEFAULT_TOPOLOGY)
        if not Path(topology.source).is_file():
            raise ValueError(f"topology {topology.source!r} is not a file: a lab keeps a copy "
                             "so that `lab` commands in other processes can reopen it")
        stack_obj = make_stack(stack, profile, **stack_options)
        if stack_obj is not None:
            problems = stack_obj.check(topology)
            if problems:
                raise ConfigurationError(problems)
        make_labs_dir()  # placed apart from other labs' churn: see there
        lab_dir = labs_dir() / name
        try:
            lab_dir.mkdir(mode=0o700)
        except FileExistsError:
            raise LabExists(f"a lab named {name!r} already exists ({lab_dir}); `lab down "
                            f"--name {name}` removes it") from None
        lab = cls(name, topology, profile, stack_obj, stack, backend_obj)
        shutil.copyfile(topology.source, lab_dir / "topology.toml")
        lab._write_identity(network_mode=None)
        return lab

    @classmethod
    def attach(cls, name: str) -> Lab:
        """Reopen a lab that some other process brought up."""
        check_lab_name(name)
        lab_dir = labs_dir() / name
        try:
            identity = json.loads((lab_dir / "lab.json").read_text())
        except FileNotFoundError:
            raise LabNotFound(f"no lab named {name!r} (see `lab list`)") from None
        topology = load_topology(lab_dir / "topology.toml")
        stack = make_stack(identity["stack"], identity["profile"],
                           **identity.get("stack_options", {}))
        backend = make_backend(identity.get("backend", DEFAULT_BACKEND), identity.get("image"))
        lab = cls(name, topology, identity["profile"], stack, identity["stack"], backend)
        return lab

    def _write_identity(self, network_mode: str | None, **extra: Any) -> None:
        options = self.stack.options_record() if self.stack is not None else {}
        identity = {"name": self.name, "profile": self.profile, "stack": self.stack_name,
                    "stack_options": options,
                    "network_mode": network_mode, "created": time.time(),
                    "backend": self.backend.name, "image": self.backend.image,
                    "topology": self.topology.source, "creator_pid": os.getpid(), **extra}
        tmp = self.dir / "lab.json.tmp"
        tmp.write_text(json.dumps(identity, indent=2))
        os.replace(tmp, self.dir / "lab.json")

    @property
    def identity(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "lab.json").read_text())
        return data

    # -- the switch -------------------------------------------------------------------------------
    @property
    def switch_spec(self) -> ContainerSpec:
        return ContainerSpec(hostname="switch", fs_root=self.dir / "switch",
                             console=self.dir / "switch.log",
                             cgroup=Cgroup.for_node(self.name, "switch"), private=False)

    @property
    def switch_pid(self) -> int:
        pid = self.identity.get("switch_pid")
        start = self.identity.get("switch_start")
        if pid is None or start is None or not ProcessRef(pid, start).alive():
            raise LabStateError(f"lab {self.name}: the switch is not running")
        return int(pid)

    @property
    def switch_netns(self) -> str:
        return f"/proc/{self.switch_pid}/ns/net"

    @property
    def fabric(self) -> Fabric:
        if self._fabric is None:
            mode: NetworkMode = self.identity["network_mode"]
            self._fabric = Fabric(self.topology, self.switch_netns, mode)
        return self._fabric

    # -- lifecycle --------------------------------------------------------------------------------
    def up(self, progress: Progress | None = None) -> None:
        """Power everything on. On any failure (or ^C) the lab is removed again.

        The switch's and every node's container start side by side (each is a fresh
        interpreter setting up namespaces: ~20-50 ms apiece, overlapping on the machine's
        cores); then the switch is built, every node is finished and wired in the topology's
        order, and the stack boots them all (`Stack.boot_all`). Nothing waits for IPv6
        duplicate address detection: the lab's own addresses skip it (lab/net.py). The
        `lab.up.timing` event says where the time went."""
        say = progress or (lambda _msg: None)
        steps: dict[str, float] = {}
        began = mark = time.monotonic()

        def step(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            steps[name] = round(steps.get(name, 0.0) + now - mark, 4)
            mark = now

        try:
            self.backend.prepare(self)
            step("backend_prepare_s")
            say("switch")
            spec = self.switch_spec
            self.records.add("cgroup", path=str(spec.cgroup.path))
            switch = container.launch(spec)
            self._switch_popen = switch.popen
            self.records.add("process", pid=switch.popen.pid,
                             start=ProcessRef.of(switch.popen.pid).start, what="switch")
            step("switch_launch_s")
            launches: dict[str, Launch] = {}
            if self.stack is None:
                # nothing to write between the copies and the boot: each node's container
                # starts as soon as its files are there, while the next node's are copied
                for node in self.nodes.values():
                    _populate([node])
                    step("populate_s")
                    launches[node.name] = self._launch(node)
                    step("nodes_launch_s")
            else:
                _populate(list(self.nodes.values()))
                step("populate_s")
                say("configuration")
                self.stack.prepare(self)
                step("configuration_s")
                for node in self.nodes.values():
                    launches[node.name] = self._launch(node)
                step("nodes_launch_s")
            running = switch.ready()
            mode, why = detect_mode_cached(running.netns_path, lab_root() / "network-mode.json")
            self._write_identity(mode, network_mode_reason=why, switch_pid=running.init_pid,
                                 switch_start=ProcessRef.of(running.init_pid).start)
            self.fabric.build_switch()
            self.log_event("lab.up", network_mode=mode)
            step("switch_s")
            for launch in launches.values():
                launch.ready()
            step("nodes_ready_s")
            for node in self.nodes.values():
                node._finish_power_on(launches[node.name], settle=False)
            step("nodes_wired_s")
            if self.stack is not None:
                # all wired first: the stack boots them in its own order, servers side by side
                say("booting the nodes")
                for name, seconds in self.stack.boot_all(list(self.nodes.values())).items():
                    self.log_event("node.boot", node=name, boot_s=round(seconds, 4))
                step("boot_s")
            # the power agent is needed only once a node asks to reboot (the request waits for
            # it in the node's files); started after the containers, its interpreter does not
            # compete with theirs for the CPU
            power.start_agent(self)
            step("power_agent_s")
            if self.stack is not None:
                say("waiting for the services to be ready (heartbeat's own start-up waits)")
                waited = self.stack.wait_ready(self)
                step("wait_ready_s")
                self.log_event("lab.ready", waited_s=waited)
            self.log_event("lab.up.timing", total_s=round(time.monotonic() - began, 4), **steps)
        except BaseException:
            with suppress(Exception):
                self.down()
            raise

    def _launch(self, node: Node) -> Launch:
        self.records.add("cgroup", path=str(node.cgroup.path))
        return node._launch()

    def down(self) -> list[str]:
        done = teardown(self.name)
        if self._switch_popen is not None:
            with suppress(Exception):
                self._switch_popen.wait(timeout=5)
        for node in self.nodes.values():
            node._popen = None
        return done

    def log_event(self, event: str, **fields: Any) -> None:
        """Lab-made events (faults, power) for the timeline, on CLOCK_MONOTONIC."""
        line = json.dumps({"t_mono": time.monotonic(), "t_wall": time.time(), "event": event,
                           **fields})
        with suppress(FileNotFoundError), open(self.dir / "events.jsonl", "a") as f:
            f.write(line + "\n")

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = (self.dir / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # -- roles and health (what scenarios aim at and wait on) -------------------------------------
    def active(self) -> Node:
        """The server holding every VIP (see lab.roles)."""
        return roles.active(self)

    def standby(self) -> Node:
        """The server that is not active."""
        return roles.standby(self)

    def with_role(self, role: str) -> list[Node]:
        """The nodes the topology gives `role` (server, client, router, internet)."""
        return [self.nodes[spec.name] for spec in self.topology.nodes_with_role(role)]

    def holders(self, vip: str | None = None) -> set[str]:
        """Servers whose kernel holds `vip` now (default: the first VIP)."""
        return roles.holders(self, vip)

    def health_findings(self, skip: Sequence[str] = ()) -> list[str]:
        """The post-scenario audit's state checks, now: each VIP held once, one dnsmasq,
        DRBD Connected/UpToDate with one Primary. Empty means healthy."""
        from lab import audits
        return [str(f) for f in audits.state_findings(self.status(), skip)]

    def wait_healthy(self, timeout: float = 120.0, skip: Sequence[str] = ()) -> None:
        """Wait until `health_findings` is empty (WaitTimeout names what still is not)."""
        __tracebackhide__ = True
        wait_for(lambda: self.health_findings(skip), until=lambda found: not found,
                 timeout=timeout, what=f"lab {self.name} to be healthy")

    def settled(self, timeout: float = 180.0, quiet_s: float | None = None) -> Recovery:
        """Wait until the pair is healthy, or until what clients and the disks see (VIP
        holders, dnsmasq, each replica's role and states) has not changed, and no server's
        heartbeat has logged a line, for ``quiet_s`` (default: budgets.settle_quiet_s, long
        enough for a restarted heartbeat to negotiate and take over) — then name that ending
        (lab.recovery)."""
        __tracebackhide__ = True
        from lab import budgets
        quiet = quiet_s if quiet_s is not None else budgets.settle_quiet_s(self)
        seen: dict[str, Any] = {"since": time.monotonic(), "sig": None}

        def ha_log_sizes() -> tuple[int, ...]:
            sizes = []
            for node in roles.servers(self):
                try:
                    sizes.append(node.path("/var/log/ha-log").stat().st_size)
                except OSError:
                    sizes.append(-1)
            return tuple(sizes)

        def look() -> Recovery:
            status = self.status()
            sig = (recovery.signature(status), ha_log_sizes())
            if sig != seen["sig"]:
                seen.update(sig=sig, since=time.monotonic())
            return recovery.classify(status)

        def done(found: Recovery) -> bool:
            return (found.ending == recovery.HEALTHY or
                    time.monotonic() - seen["since"] >= quiet)
        return wait_for(look, until=done, timeout=timeout, interval=0.5, max_interval=1.0,
                        what=f"lab {self.name} to settle ({quiet:.0f} s unchanged, or healthy)")

    def expect_settled(self, *endings: str, timeout: float = 180.0) -> Recovery:
        """Wait for the pair to settle (`settled`) and fail unless it ended in one of
        ``endings`` (lab.recovery's names). The ending is logged as a lab event; the audit
        after the scenario then leaves out the state checks that ending breaks on purpose,
        and still runs the rest."""
        __tracebackhide__ = True
        unknown = [e for e in endings if e not in recovery.ENDINGS]
        if unknown or not endings:
            raise ValueError(f"endings must be some of {', '.join(recovery.ENDINGS)}; "
                             f"got {', '.join(endings) or 'none'}")
        found = self.settled(timeout=timeout)
        self.log_event("pair.settled", ending=found.ending, server=found.server,
                       findings=list(found.findings))
        if found.ending not in endings:
            raise AssertionError(f"lab {self.name} settled as {found}; this scenario knows "
                                 f"only: {', '.join(endings)}")
        self.audit_accepts.update(recovery.BREAKS[found.ending])
        return found

    def wait_until(self, condition: Callable[[], Any], timeout: float = 60.0,
                   what: str = "") -> Any:
        """Wait until `condition()` is true; return its value."""
        __tracebackhide__ = True
        return wait_for(condition, timeout=timeout, what=what or "a condition on the lab")

    # -- observation ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        identity = self.identity
        nodes: dict[str, Any] = {}
        for node in self.nodes.values():
            state = node.state
            entry: dict[str, Any] = {"state": state, "role": node.spec.role, "interfaces": {}}
            if state != "stopped":
                with suppress(Exception):
                    entry["interfaces"] = node.addresses()
                entry["processes"] = len(node.cgroup.pids())
                with suppress(Exception):
                    entry.update(node.backend.describe(node))
            nodes[node.name] = entry
        status: dict[str, Any] = {
            "name": self.name,
            "profile": self.profile,
            "stack": self.stack_name,
            "backend": self.backend.name,
            "image": self.backend.image,
            "network_mode": identity.get("network_mode"),
            "network_mode_reason": identity.get("network_mode_reason"),
            "nodes": nodes,
        }
        if self.stack is not None:
            status.update(self.stack.status(self))
        return status


def _populate(nodes: list[Node]) -> None:
    """Give every node its persistent files and the power shims, before anything runs."""
    for node in nodes:
        node.backend.provision(node)
        node.container_spec.populate()
        power.install_shims(node)


def running_labs() -> list[str]:
    if not labs_dir().is_dir():
        return []
    return sorted(p.name for p in labs_dir().iterdir() if (p / "lab.json").exists())


def resolve_lab_name(explicit: str | None) -> str:
    """`--name`, else $LAB_NAME, else the only lab there is."""
    name = explicit or os.environ.get("LAB_NAME")
    if name:
        return name
    labs = running_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabNotFound("no lab is up (start one with `lab up`)")
    raise LabStateError(f"{len(labs)} labs are up ({', '.join(labs)}): pick one with --name "
                        "or LAB_NAME")
