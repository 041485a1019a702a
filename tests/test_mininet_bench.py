"""The Mininet peer's root-namespace check, and that its runs are isolated by construction."""

from __future__ import annotations

from lab import mininet_bench


def test_changed_names_what_appeared_and_vanished() -> None:
    before = {"links": frozenset({"lo", "eth0"}), "mounts": frozenset({"/ ext4"})}
    after = {"links": frozenset({"lo", "eth0", "s1-eth1"}), "mounts": frozenset()}
    assert mininet_bench.changed(before, after) == ["links: appeared: s1-eth1",
                                                    "mounts: vanished: / ext4"]
    assert mininet_bench.changed(before, before) == []


def test_every_run_gets_its_own_network_mount_and_pid_namespaces() -> None:
    assert {"--net", "--mount", "--pid", "--fork"} <= set(mininet_bench.ISOLATION)
    assert "Mininet.inited = True" in mininet_bench.DRIVER  # no host-wide sysctls
