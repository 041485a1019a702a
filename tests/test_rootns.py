"""rootns.differences judges one lab by what is its own (pure: hand-made snapshots)."""

from __future__ import annotations

from pathlib import Path

from lab.rootns import Snapshot, differences

LABS = Path("/var/lib/hapair-lab/labs")
CG = "/sys/fs/cgroup/freezer/hapair-lab"


def snap(**fields: set[str]) -> Snapshot:
    names = ("links", "addresses", "routes", "named_netns", "mounts", "loops", "cgroups",
             "processes")
    return Snapshot(**{n: frozenset(fields.get(n, set())) for n in names})


def test_identical_snapshots_have_no_differences() -> None:
    s = snap(links={"lo 00:00:00:00:00:00 up"}, cgroups={f"{CG}/t1-1"})
    assert differences(s, s, LABS / "t1-1", "t1-1") == []


def test_other_labs_coming_and_going_are_not_this_labs_problem() -> None:
    before = snap(cgroups={f"{CG}/t1-1", f"{CG}/t1-1/switch"})
    after = snap(
        cgroups={f"{CG}/t1-12", f"{CG}/t1-12/switch", f"{CG}/s9-1/lsvm1"},
        loops={f"loop3 -> {LABS}/t1-12/nodes/lsvm1/fs/srv/drbd0.img"},
        processes={f"77:tini -- sleep {LABS}/t1-12/nodes/c1"})
    assert differences(before, after, LABS / "t1-1", "t1-1") == []


def test_this_labs_leftovers_are_named() -> None:
    after = snap(
        cgroups={f"{CG}/t1-1", f"{CG}/t1-1/lsvm2"},
        loops={f"loop3 -> {LABS}/t1-1/nodes/lsvm1/fs/srv/drbd0.img"},
        processes={f"77:python -m lab.power {LABS}/t1-1", f"78:tini -- x {LABS}/t1-1/nodes"})
    got = differences(snap(), after, LABS / "t1-1", "t1-1")
    assert got == [
        f"loop device left: loop3 -> {LABS}/t1-1/nodes/lsvm1/fs/srv/drbd0.img",
        f"cgroup left: {CG}/t1-1",
        f"cgroup left: {CG}/t1-1/lsvm2",
        f"process left: 77:python -m lab.power {LABS}/t1-1",
        f"process left: 78:tini -- x {LABS}/t1-1/nodes",
    ]


def test_a_private_lab_roots_cgroups_are_judged_by_their_owner_too() -> None:
    private = "/sys/fs/cgroup/freezer/hapair-lab-0123456789"
    after = snap(cgroups={f"{private}/k0/switch", f"{private}/k01/switch"})
    assert differences(snap(), after, Path("/tmp/x/labs/k0"), "k0") == [
        f"cgroup left: {private}/k0/switch"]


def test_a_lab_named_like_a_node_does_not_claim_other_labs_nodes() -> None:
    after = snap(cgroups={f"{CG}/t1-1/switch"})
    assert differences(snap(), after, LABS / "switch", "switch") == []


def test_root_namespace_network_and_mounts_must_be_identical_whoever_changed_them() -> None:
    before = snap(links={"lo x up"}, mounts={"/ / rw"})
    after = snap(links={"lo x up", "veth0 y up"}, addresses={"veth0 10.0.0.1/24"},
                 named_netns={"foo"})
    assert differences(before, after, LABS / "t1-1", "t1-1") == [
        "links: appeared: veth0 y up",
        "addresses: appeared: veth0 10.0.0.1/24",
        "named_netns: appeared: foo",
        "mounts: vanished: / / rw",
    ]
