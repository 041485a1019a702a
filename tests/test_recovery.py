"""The endings a pair settles into, named from `lab.status()` (states as recorded in soak runs)."""

from __future__ import annotations

from typing import Any

from lab import recovery

VIPS = ("192.168.1.4", "192.168.3.4", "2001:db8:4100:13c2:0:ffff:c0a8:104")


def status(holder: str | None, dnsmasq: tuple[str, ...], drbd: dict[str, tuple[str, str, str]],
           also_held_by: str | None = None) -> dict[str, Any]:
    def interfaces(node: str) -> dict[str, list[str]]:
        held = [f"{vip}/64" for vip in VIPS if node in (holder, also_held_by)]
        return {"enp2s1": ["192.168.1.6/24" if node == "lsvm1" else "192.168.1.7/24", *held]}
    return {
        "vip": {vip: holder for vip in VIPS},
        "nodes": {n: {"state": "running", "interfaces": interfaces(n)} for n in ("lsvm1", "lsvm2")},
        "services": {n: {"dnsmasq": n in dnsmasq, "heartbeat": True} for n in ("lsvm1", "lsvm2")},
        "drbd": {n: {"role": r, "cstate": c, "dstate": d} for n, (r, c, d) in drbd.items()},
    }


CONNECTED = {"lsvm1": ("Secondary", "Connected", "UpToDate"),
             "lsvm2": ("Primary", "Connected", "UpToDate")}


def test_one_holder_one_dnsmasq_connected_disks_is_healthy() -> None:
    found = recovery.classify(status("lsvm2", ("lsvm2",), CONNECTED))
    assert (found.ending, found.server, found.findings) == (recovery.HEALTHY, "lsvm2", ())


def test_nobody_holding_anything_after_a_cable_pull_is_unserved() -> None:
    # cable_pull_primary, soak run 3: both nodes gave everything up, heartbeat content
    drbd = {"lsvm1": ("Secondary", "Connected", "UpToDate"),
            "lsvm2": ("Secondary", "Connected", "UpToDate")}
    found = recovery.classify(status(None, (), drbd))
    assert found.ending == recovery.UNSERVED and found.server is None
    assert "[vips] 192.168.1.4 is held by 0 nodes (none)" in found.findings
    assert "[drbd] 0 Primary ()" in found.findings
    assert recovery.BREAKS[found.ending] == ("vips", "dnsmasq", "drbd")


def test_serving_primary_left_standalone_after_a_thaw_is_served_unreplicated() -> None:
    # split_brain_freeze_primary, soak run 3: "I shall become SyncTarget, but I am primary!"
    drbd = {"lsvm1": ("Secondary", "WFConnection", "UpToDate"),
            "lsvm2": ("Primary", "StandAlone", "UpToDate")}
    found = recovery.classify(status("lsvm2", ("lsvm2",), drbd))
    assert (found.ending, found.server) == (recovery.SERVED_UNREPLICATED, "lsvm2")
    assert recovery.BREAKS[found.ending] == ("drbd",)
    assert "served-unreplicated (serving: lsvm2)" in str(found)


def test_a_vip_held_twice_is_unexplained_whatever_else_holds() -> None:
    drbd = {"lsvm1": ("Primary", "StandAlone", "UpToDate"),
            "lsvm2": ("Primary", "StandAlone", "UpToDate")}
    found = recovery.classify(status("lsvm2", ("lsvm1", "lsvm2"), drbd, also_held_by="lsvm1"))
    assert found.ending == recovery.UNEXPLAINED
    assert any("held by 2 nodes" in f for f in found.findings)


def test_standalone_disk_under_a_node_that_does_not_serve_is_unexplained() -> None:
    # the disk's only Primary is not the node clients reach: not the served-unreplicated ending
    drbd = {"lsvm1": ("Primary", "StandAlone", "UpToDate"),
            "lsvm2": ("Secondary", "WFConnection", "UpToDate")}
    assert recovery.classify(status("lsvm2", ("lsvm2",), drbd)).ending == recovery.UNEXPLAINED


def test_signature_changes_with_holders_services_and_replica_states_only() -> None:
    a = status("lsvm2", ("lsvm2",), CONNECTED)
    b = status("lsvm2", ("lsvm2",), CONNECTED)
    b["nodes"]["lsvm1"]["processes"] = 99  # not part of what clients or disks see
    assert recovery.signature(a) == recovery.signature(b)
    c = status("lsvm2", ("lsvm2",), {**CONNECTED, "lsvm1": ("Secondary", "WFConnection",
                                                            "UpToDate")})
    assert recovery.signature(a) != recovery.signature(c)
    assert recovery.signature(a) != recovery.signature(status(None, (), CONNECTED))


def test_survivor_serving_while_its_peer_is_down_is_served_alone() -> None:
    # the F20 case, the start-up race's ending: lsvm1 powered off, lsvm2 took its own group
    found = recovery.classify(status("lsvm2", ("lsvm2",),
                                     {"lsvm2": ("Primary", "WFConnection", "UpToDate")}))
    assert (found.ending, found.server) == (recovery.SERVED_ALONE, "lsvm2")
    # the same replica states with both nodes up is not "alone": the peer is there to connect
    both = {"lsvm1": ("Secondary", "WFConnection", "UpToDate"),
            "lsvm2": ("Primary", "WFConnection", "UpToDate")}
    assert recovery.classify(status("lsvm2", ("lsvm2",), both)).ending == recovery.UNEXPLAINED
