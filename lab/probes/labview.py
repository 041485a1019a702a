"""What the instrument reads from a running lab besides its probes: node MACs, VIP holders,
DRBD and heartbeat states, lab events as fault windows, node logs.

Everything here only reads. VIP holders come from each server's kernel (netlink on the node's
namespace from the host), not from heartbeat's opinion, because the kernel is what answers ARP:
a frozen node still "holds" its VIPs, which is exactly the split brain the checks must see.
Commands run inside a node (drbdadm, cl_status) are skipped for nodes that are not running —
a command in a frozen node's cgroup would hang until its timeout.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.probes.records import FaultEvent

# lab event → (fault name, phase); an "end" closes the open fault of the same node and family
LAB_FAULT_EVENTS: dict[str, tuple[str, str]] = {
    "node.crash": ("crash", "start"),
    "node.shutdown": ("shutdown", "start"),
    "node.start": ("down", "end"),
    "node.freeze": ("freeze", "start"),
    "node.thaw": ("freeze", "end"),
    "cable.pull": ("cable", "start"),
    "cable.plug": ("cable", "end"),
    "vlan.cut": ("vlan", "start"),
    "vlan.heal": ("vlan", "end"),
}
_FAMILY = {"crash": "down", "shutdown": "down"}


def server_macs(lab: Any) -> dict[str, str]:
    """MAC → node for every port of every server node (from the topology, fixed per node)."""
    out: dict[str, str] = {}
    for node in lab.topology.nodes_with_role("server"):
        for port in node.ports:
            out[str(port.mac).lower()] = node.name
    return out


def mac_map_arg(lab: Any) -> str:
    return ",".join(f"{mac}={node}" for mac, node in sorted(server_macs(lab).items()))


def vips(lab: Any) -> list[str]:
    return [str(v.address) for v in lab.topology.vips]


def vips_for_segment(lab: Any, segment: str) -> list[str]:
    return [str(v.address) for v in lab.topology.vips if v.segment == segment]


def client_segment(lab: Any, client: str) -> str:
    spec = lab.topology.nodes[client]
    return str(spec.interfaces[0].segment)


def client_iface(lab: Any, client: str) -> str:
    return str(lab.topology.nodes[client].interfaces[0].name)


def vip_holders(lab: Any) -> dict[str, tuple[str, ...]]:
    """VIP → servers whose kernel has it configured right now."""
    wanted = {ipaddress.ip_address(v): v for v in vips(lab)}
    held: dict[str, list[str]] = {v: [] for v in wanted.values()}
    for spec in lab.topology.nodes_with_role("server"):
        node = lab[spec.name]
        if node.state == "stopped":
            continue
        try:
            addrs = node.addresses()
        except Exception:
            continue
        for texts in addrs.values():
            for text in texts:
                ip = ipaddress.ip_interface(text.split(" ")[0]).ip
                if ip in wanted and spec.name not in held[wanted[ip]]:
                    held[wanted[ip]].append(spec.name)
    return {v: tuple(sorted(n)) for v, n in held.items()}


def node_command(lab: Any, name: str, command: str, timeout: float = 2.0) -> str:
    node = lab[name]
    if node.state != "running":
        return str(node.state)
    try:
        rc, out = node.execute(command, timeout=timeout)
    except Exception as exc:
        return f"? ({type(exc).__name__})"
    text = " ".join(out.split())
    return text if text else f"(exit {rc})"


def drbd_states(lab: Any) -> dict[str, str]:
    """Role/connection/disk per server, from the stack's own status (the replicator's view);
    a lab without services has no DRBD to show."""
    if getattr(lab, "stack", None) is None:
        return {s.name: "— (no services)" for s in lab.topology.nodes_with_role("server")}
    try:
        drbd = lab.stack.status(lab).get("drbd") or {}
    except Exception as exc:
        return {s.name: f"? ({type(exc).__name__})" for s in lab.topology.nodes_with_role(
            "server")}
    out = {}
    for name, st in drbd.items():
        if isinstance(st, dict):
            out[name] = (f"{st.get('role', '?')} {st.get('cstate', '?')} "
                         f"{st.get('dstate', '?')}")
        else:
            out[name] = str(st)
    return out


def heartbeat_views(lab: Any) -> dict[str, str]:
    if getattr(lab, "stack", None) is None:
        return {s.name: "— (no services)" for s in lab.topology.nodes_with_role("server")}
    cmd = ("for n in $(cl_status listnodes 2>/dev/null); do "
           "printf '%s=%s ' $n $(cl_status nodestatus $n 2>/dev/null); done")
    return {s.name: node_command(lab, s.name, cmd)
            for s in lab.topology.nodes_with_role("server")}


def faults_from_lab_events(events: Iterable[dict[str, Any]]) -> list[FaultEvent]:
    """The lab's own power/cable events (events.jsonl) as fault windows. A nemesis that writes
    ``fault.start``/``fault.end`` events with ``fault``, ``fault_id`` and ``targets`` is taken
    as it is."""
    out: list[FaultEvent] = []
    open_: dict[tuple[str, str], FaultEvent] = {}
    asked: dict[str, dict[str, Any]] = {}  # node -> its pending power request (reboot -f ...)
    n = 0
    for ev in events:
        name = str(ev.get("event", ""))
        t = ev.get("t_mono")
        if t is None:
            continue
        if name == "node.power_request":
            asked[str(ev.get("node", ""))] = ev
            continue
        if name in ("fault.start", "fault.end"):
            out.append(FaultEvent(
                t=float(t), phase="start" if name == "fault.start" else "end",
                fault=str(ev.get("fault", "fault")), fault_id=str(ev.get("fault_id", n)),
                targets=tuple(ev.get("targets") or ()), detail=ev.get("detail")))
            continue
        if name not in LAB_FAULT_EVENTS:
            continue
        fault, phase = LAB_FAULT_EVENTS[name]
        node = str(ev.get("node", ""))
        family = _FAMILY.get(fault, fault)
        key = (family, node + ":" + str(ev.get("iface", ev.get("port", ""))))
        if phase == "start":
            n += 1
            request = asked.pop(node, None) if fault in _FAMILY else None
            if request is not None:  # the node's own `reboot -f`, not an injected fault
                verb = str(request.get("verb", "reboot"))
                how = " -f" if request.get("how") == "force" else ""
                fe = FaultEvent(t=float(t), phase="start", fault=f"self_{verb}",
                                fault_id=f"self_{verb}-{node}-{n}", targets=(node,),
                                detail=f"`{verb}{how}` run inside {node}", injected=False)
            else:
                fe = FaultEvent(t=float(t), phase="start", fault=fault,
                                fault_id=f"{fault}-{node}-{n}", targets=(node,) if node else (),
                                detail=str(ev.get("iface") or ev.get("port") or "") or None)
            open_[key] = fe
            out.append(fe)
        elif key in open_:
            s = open_.pop(key)
            out.append(FaultEvent(t=float(t), phase="end", fault=s.fault, fault_id=s.fault_id,
                                  targets=s.targets, detail=s.detail, injected=s.injected))
    return out


def node_logs(lab: Any) -> list[tuple[Path, str, str]]:
    """(path, node, source) of the logs the timeline parses, found by name in each node's
    /var/log (heartbeat's ha-log, dnsmasq's log, the replicator's JSON events, the real
    client's events, the registrar's updates)."""
    found: list[tuple[Path, str, str]] = []
    for node in lab:
        try:
            log_dir = Path(node.log_dir)
        except Exception:
            continue
        if not log_dir.is_dir():
            continue
        for p in sorted(log_dir.rglob("*")):
            if not p.is_file():
                continue
            name = p.name
            if name.startswith("ha-log") or name == "ha.log":
                found.append((p, node.name, "heartbeat"))
            elif name.startswith("dnsmasq") and not name.endswith(".leases"):
                found.append((p, node.name, "dnsmasq"))
            elif name == "dhclient-events.jsonl":
                found.append((p, node.name, "dhclient"))
            elif name == "registrar.jsonl":
                found.append((p, node.name, "registrar"))
            elif name == "drbd-events.log" or ("replicator" in name and name.endswith(".jsonl")):
                found.append((p, node.name, "replicator"))
    return found
