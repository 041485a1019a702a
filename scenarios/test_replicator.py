"""The replicated disk in real node containers behaves like DRBD 8.4.

Every test stands up the seed's ``drbd0`` resource on lsvm1/lsvm2 of a fresh bare lab (real FUSE,
loop devices, ext4 and TCP between the nodes' own addresses), bootstraps it like the seed
(``--overwrite-data-of-peer primary`` on lsvm2, ``mkfs.ext4``) and then breaks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.lab import Lab
from lab.node import Node
from lab.replicator import service
from lab.replicator.metadata import data_size_for
from lab.wait import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.replicator]

SEED_RES = Path(__file__).parents[1] / "fixtures" / "seed" / "drbd0.res"
SECRET = "lab-test-secret-7f3a"
MNT = "/srv/drbd0"


def resource_text(net_extra: str = "", handlers: dict[str, str] | None = None,
                  policies: dict[str, str] | None = None) -> str:
    """The seed's resource with a real secret, plus test-specific net options/handlers."""
    text = SEED_RES.read_text().replace("SOME_PASSWORD_STRING", SECRET)
    for key, value in (policies or {}).items():
        text = re.sub(rf"{key} [^;]+;", f"{key} {value};", text)
    for key, cmd in (handlers or {}).items():
        text = re.sub(rf'\n{key} "[^"]*";', f'\n{key} "{cmd}";', text)
    if net_extra:
        text = text.replace("net {\n", "net {\n" + net_extra + "\n", 1)
    return text


def setup_pair(lab: Lab, text: str | None = None, mkfs: bool = True) -> tuple[Node, Node]:
    """Write the .res on both nodes, start both daemons, bootstrap lsvm2 as the seed does."""
    text = text or resource_text("ping-int 2;")
    lsvm1, lsvm2 = lab["lsvm1"], lab["lsvm2"]
    for node in (lsvm1, lsvm2):
        service.write_resource(node, text)  # created 640: it holds the secret
    for node in (lsvm1, lsvm2):
        service.start(node, "drbd0", size=64 * 1024 * 1024)
    service.bootstrap(lsvm2, lsvm1, "drbd0", fs=mkfs)
    return lsvm1, lsvm2


def state(node: Node) -> dict[str, Any]:
    st = service.full_status(node)
    assert st is not None, f"{node.name}: replicator not running"
    return st


def wait(node: Node, pred: Callable[[dict[str, Any]], bool], what: str,
         timeout: float = 30) -> dict[str, Any]:
    return service.wait_for(node, pred, timeout=timeout, what=what)


def events(node: Node, kind: str | None = None) -> list[dict[str, Any]]:
    lines = node.path("/var/log/drbd-events.log").read_text().splitlines()
    out = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in out if kind is None or e["event"] == kind]


def image_digest(node: Node) -> str:
    """SHA-256 of the data area of the node's backing image (metadata excluded)."""
    img = service.image_path(node)
    size = data_size_for(img.stat().st_size)
    h = hashlib.sha256()
    with open(img, "rb") as f:
        left = size
        while left:
            chunk = f.read(min(left, 1 << 20))
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def mount_primary(node: Node) -> None:
    node.succeed(f"drbdadm primary drbd0 && mkdir -p {MNT} && mount /dev/drbd0 {MNT}")


def test_secret_file_modes_and_no_secret_in_logs(lab: Lab) -> None:
    lsvm1, lsvm2 = setup_pair(lab, mkfs=False)
    for node in (lsvm1, lsvm2):
        assert node.path("/etc/drbd.d/drbd0.res").stat().st_mode & 0o777 == 0o640
        for log in ("/var/log/drbd-events.log", "/var/log/drbd-drbd0.log"):
            assert SECRET not in node.path(log).read_text()
    rc, out = lsvm2.execute("drbdadm verify drbd0")  # the seed sets no verify-alg
    assert rc == 11 and "(-14) Need a verify algorithm to start online verify" in out, out


def test_crash_of_primary_keeps_every_fsynced_file(lab: Lab) -> None:
    """mkfs+mount+write+fsync on lsvm2, power loss, lsvm1 takes over clean."""
    lsvm1, lsvm2 = setup_pair(lab)
    mount_primary(lsvm2)
    lsvm2.succeed(f"mkdir {MNT}/dnsmasq && for i in $(seq 1 40); do "
                  f"echo lease-$i > {MNT}/dnsmasq/f$i; done && sync -f {MNT}/dnsmasq/f1 && "
                  f"python3 -c \"import os; fd=os.open('{MNT}/dnsmasq/last', "
                  "os.O_WRONLY|os.O_CREAT); os.write(fd, b'fsynced'); os.fsync(fd)\"")
    lsvm2.crash()
    # lsvm1 notices the dead peer (ping-int + ping-timeout), then promotes like drbddisk does
    wait(lsvm1, lambda s: s["cstate"] == "WFConnection", "peer loss detected", timeout=20)
    lsvm1.succeed("drbdadm primary drbd0")
    lsvm1.succeed(f"mkdir -p {MNT} && mount /dev/drbd0 {MNT}")  # ext4 replays its journal
    assert lsvm1.succeed(f"cat {MNT}/dnsmasq/last") == "fsynced"
    for i in (1, 20, 40):
        assert lsvm1.succeed(f"cat {MNT}/dnsmasq/f{i}").strip() == f"lease-{i}"
    lsvm1.succeed(f"umount {MNT}")
    rc, out = lsvm1.execute("fsck.ext4 -fn /dev/drbd0")
    assert rc == 0, out
    # the crashed node comes back as a SyncTarget of the survivor and catches up
    lsvm2.start()
    service.after_crash(lsvm2)
    service.start(lsvm2, "drbd0", size=64 * 1024 * 1024)
    service.wait_connected(lsvm2, timeout=60)
    assert state(lsvm2)["last_resync"]["side"] == "target"
    assert state(lsvm1)["role"] == "Primary"


def test_reconnect_resyncs_only_dirty_blocks(lab: Lab) -> None:
    """N MiB written while disconnected -> only those blocks resync."""
    lsvm1, lsvm2 = setup_pair(lab, mkfs=False)
    lsvm1.succeed("drbdadm disconnect drbd0")
    wait(lsvm2, lambda s: s["cstate"] == "WFConnection", "lsvm2 sees the disconnect")
    lsvm2.succeed("drbdadm primary drbd0")
    mib = 5
    lsvm2.succeed(f"dd if=/dev/urandom of=/dev/drbd0 bs=1M count={mib} seek=3 oflag=direct "
                  "status=none")
    assert state(lsvm2)["out_of_sync_kib"] == mib * 1024
    lsvm1.succeed("drbdadm connect drbd0")
    st = service.wait_connected(lsvm1, timeout=60)
    assert st["last_resync"]["side"] == "target"
    assert st["last_resync"]["kib"] == mib * 1024  # only the dirty blocks, not 64 MiB
    assert state(lsvm2)["last_resync"]["kib"] == mib * 1024
    assert state(lsvm2)["out_of_sync_kib"] == 0
    lsvm2.succeed("drbdadm secondary drbd0")
    assert image_digest(lsvm1) == image_digest(lsvm2)


def _diverge(lsvm1: Node, lsvm2: Node, mib1: int, mib2: int, roles: tuple[str, str]) -> None:
    """Cut the link, let each node be Primary and write, then set the roles for reconnect."""
    lsvm1.succeed("drbdadm disconnect drbd0")
    lsvm2.succeed("drbdadm disconnect drbd0")
    for node, mib, marker in ((lsvm1, mib1, "one"), (lsvm2, mib2, "two")):
        node.succeed("drbdadm primary drbd0")
        node.succeed(f"dd if=/dev/urandom of=/dev/drbd0 bs=1M count={mib} seek=2 oflag=direct "
                     "status=none")
        node.succeed(f"printf 'written-by-{marker}' | dd of=/dev/drbd0 bs=4096 seek=1 "
                     "conv=sync oflag=direct status=none")
    for node, role in zip((lsvm1, lsvm2), roles, strict=True):
        if role == "Secondary":
            node.succeed("drbdadm secondary drbd0")


def _marker(node: Node) -> str:
    """Read block 1 straight from the node's backing image (works whatever the role)."""
    with open(service.image_path(node), "rb") as f:
        f.seek(4096)
        return f.read(16).decode(errors="replace")


def _reconnect(lsvm1: Node, lsvm2: Node) -> None:
    lsvm1.succeed("drbdadm connect drbd0")
    lsvm2.succeed("drbdadm connect drbd0")


def test_split_brain_0pri_discard_least_changes(lab: Lab) -> None:
    """Split brain, the seed's after-sb-0pri: the node with fewer changes is discarded."""
    lsvm1, lsvm2 = setup_pair(lab, mkfs=False)
    _diverge(lsvm1, lsvm2, mib1=1, mib2=3, roles=("Secondary", "Secondary"))
    _reconnect(lsvm1, lsvm2)
    service.wait_connected(lsvm1, timeout=60)
    hs = [e for e in events(lsvm1, "handshake") if e["split_brain"]][-1]
    assert hs["auto_resolved"] and hs["action"] == "target" and hs["pcount"] == 0
    assert state(lsvm1)["split_brain"]["discarded"] == "this node"
    assert any(e["helper"] == "initial-split-brain" for e in events(lsvm1, "helper"))
    assert _marker(lsvm1) == _marker(lsvm2) == "written-by-two\0\0"
    assert image_digest(lsvm1) == image_digest(lsvm2)


def test_split_brain_1pri_discard_secondary(lab: Lab) -> None:
    """Split brain, the seed's after-sb-1pri: the Secondary is discarded, whatever it changed."""
    lsvm1, lsvm2 = setup_pair(lab, mkfs=False)
    _diverge(lsvm1, lsvm2, mib1=4, mib2=1, roles=("Secondary", "Primary"))
    _reconnect(lsvm1, lsvm2)
    service.wait_connected(lsvm1, timeout=60)
    hs = [e for e in events(lsvm1, "handshake") if e["split_brain"]][-1]
    assert hs["auto_resolved"] and hs["action"] == "target" and hs["pcount"] == 1
    assert hs["my_changes_blocks"] > hs["peer_changes_blocks"]  # more changes, still lost
    assert _marker(lsvm1) == _marker(lsvm2) == "written-by-two\0\0"
    assert state(lsvm2)["role"] == "Primary"
    lsvm2.succeed("drbdadm secondary drbd0")
    assert image_digest(lsvm1) == image_digest(lsvm2)


def test_split_brain_2pri_call_pri_lost_after_sb_demotes_idle_loser(lab: Lab) -> None:
    """Split brain, the seed's after-sb-2pri: loser by after-sb-0pri gives up Primary and syncs."""
    lsvm1, lsvm2 = setup_pair(lab, mkfs=False)
    _diverge(lsvm1, lsvm2, mib1=1, mib2=3, roles=("Primary", "Primary"))
    _reconnect(lsvm1, lsvm2)
    service.wait_connected(lsvm1, timeout=60)
    st1, st2 = state(lsvm1), state(lsvm2)
    assert (st1["role"], st2["role"]) == ("Secondary", "Primary")
    assert st1["split_brain"]["demote"] and st1["split_brain"]["pcount"] == 2
    assert _marker(lsvm1) == "written-by-two\0\0"


def both_primary_and_busy(lab: Lab, text: str) -> tuple[Node, Node]:
    """Split the pair, make both Primary with the disk mounted; lsvm1 writes little (it will
    lose by discard-least-changes), lsvm2 writes 4 MiB."""
    lsvm1, lsvm2 = setup_pair(lab, text)
    lsvm1.succeed("drbdadm disconnect drbd0")
    lsvm2.succeed("drbdadm disconnect drbd0")
    mount_primary(lsvm1)
    lsvm1.succeed(f"echo small > {MNT}/one && sync -f {MNT}/one")
    mount_primary(lsvm2)
    lsvm2.succeed(f"dd if=/dev/urandom of={MNT}/big bs=1M count=4 status=none && "
                  f"sync -f {MNT}/big")
    return lsvm1, lsvm2


def test_split_brain_2pri_busy_loser_runs_pri_lost_after_sb(lab: Lab) -> None:
    """Split brain: the losing Primary cannot demote (mounted) -> pri-lost-after-sb handler,
    split-brain handler, connection dropped (StandAlone), nobody's data discarded."""
    text = resource_text("ping-int 2;", handlers={
        "pri-lost-after-sb": "echo pri-lost-after-sb $DRBD_RESOURCE >> /var/log/handlers.log",
        "split-brain": "echo split-brain $DRBD_RESOURCE >> /var/log/handlers.log"})
    lsvm1, lsvm2 = both_primary_and_busy(lab, text)
    _reconnect(lsvm1, lsvm2)
    wait(lsvm1, lambda s: "split_brain" in s and s["cstate"] == "StandAlone", "split-brain")
    lsvm1.wait_until_succeeds("grep -q pri-lost-after-sb /var/log/handlers.log", timeout=10)
    lsvm1.wait_until_succeeds("grep -q 'split-brain drbd0' /var/log/handlers.log", timeout=10)
    assert state(lsvm1)["split_brain"]["discarded"] == "nobody"
    assert lsvm1.succeed(f"cat {MNT}/one").strip() == "small"


def test_pri_lost_after_sb_reboot_f_reboots_the_losing_node(lab: Lab) -> None:
    """The seed's handler ends in `reboot -f`: the losing Primary's node really power-cycles."""
    text = resource_text("ping-int 2;", handlers={
        "pri-lost-after-sb": "echo pri-lost-after-sb >> /var/log/handlers.log; reboot -f"})
    lsvm1, lsvm2 = both_primary_and_busy(lab, text)
    before = lsvm1.init_pid
    _reconnect(lsvm1, lsvm2)
    wait_for(lambda: lsvm1.runtime is not None and lsvm1.init_pid != before, timeout=60,
             what="lsvm1 to reboot after pri-lost-after-sb")
    assert "pri-lost-after-sb" in lsvm1.path("/var/log/handlers.log").read_text()
    requests = [e for e in lab.events() if e["event"] == "node.power_request"]
    assert [(e["node"], e["verb"], e["how"]) for e in requests] == [("lsvm1", "reboot",
                                                                     "force")]


def test_secondary_refuses_open_and_second_primary(lab: Lab) -> None:
    """EMEDIUMTYPE on a Secondary; no second Primary while connected."""
    lsvm1, lsvm2 = setup_pair(lab)
    rc, out = lsvm1.execute("dd if=/dev/drbd0 of=/dev/null bs=4k count=1")
    assert rc != 0 and "Wrong medium type" in out
    mount_primary(lsvm2)
    rc, out = lsvm1.execute("drbdadm primary drbd0")
    assert rc == 11, out
    assert "State change failed: (-1) Multiple primaries not allowed by config" in out
    rc, out = lsvm2.execute("drbdadm secondary drbd0")
    assert rc == 11 and "Device is held open by someone" in out
    lsvm2.succeed(f"umount {MNT} && drbdadm secondary drbd0")
    assert lsvm2.succeed("drbdadm role drbd0").strip() == "Secondary/Secondary"


def test_frozen_peer_never_blocks_the_primary(lab: Lab) -> None:
    """SIGSTOP'd peer -> writes resume within ``timeout``, blocks marked OOS."""
    timeout_s = 2.0
    lsvm1, lsvm2 = setup_pair(lab, resource_text("timeout 20;\nping-int 2;"))
    mount_primary(lsvm2)
    lsvm1.freeze()
    try:
        t0 = time.monotonic()
        lsvm2.succeed(f"echo during-freeze > {MNT}/x && sync -f {MNT}/x", timeout=60)
        blocked = time.monotonic() - t0
        assert blocked < timeout_s + 2.0, f"writer blocked {blocked:.1f} s"
        st = state(lsvm2)
        assert st["cstate"] in ("WFConnection", "StandAlone") and st["out_of_sync_kib"] > 0
        t1 = time.monotonic()
        lsvm2.succeed(f"echo after > {MNT}/y && sync -f {MNT}/y", timeout=10)
        assert time.monotonic() - t1 < 1.0  # no more waiting on the peer
    finally:
        lsvm1.thaw()
    service.wait_connected(lsvm1, timeout=60)
    # the blocks written meanwhile are resynced after the handshake, not during it
    wait_for(lambda: state(lsvm2)["out_of_sync_kib"] == 0, timeout=30,
             what=lambda: f"lsvm2 back in sync (state {state(lsvm2)})")


def test_cable_pull_cuts_replication_and_reconnect_resyncs(lab: Lab) -> None:
    """The link is real TCP between the nodes' addresses: pulling lsvm1's cable stops
    replication (the Primary notices within ``timeout``), plugging it back resyncs the gap."""
    lsvm1, lsvm2 = setup_pair(lab, resource_text("timeout 20;\nping-int 1;"), mkfs=False)
    lsvm2.succeed("drbdadm primary drbd0")
    lsvm1.block()
    try:
        t0 = time.monotonic()
        lsvm2.succeed("dd if=/dev/urandom of=/dev/drbd0 bs=1M count=2 seek=1 oflag=direct "
                      "status=none", timeout=60)
        assert time.monotonic() - t0 < 4.0
        st = wait(lsvm2, lambda s: s["cstate"] == "WFConnection", "link loss noticed")
        assert st["out_of_sync_kib"] >= 2048
        wait(lsvm1, lambda s: s["cstate"] == "WFConnection", "lsvm1 notices too", timeout=10)
    finally:
        lsvm1.unblock()
    st = service.wait_connected(lsvm1, timeout=60)
    assert st["last_resync"]["side"] == "target" and st["last_resync"]["kib"] >= 2048
    lsvm2.succeed("drbdadm secondary drbd0")
    assert image_digest(lsvm1) == image_digest(lsvm2)


def test_drbddisk_start_stop_status_unmodified(lab: Lab) -> None:
    """heartbeat's own resource script against our drbdadm."""
    lsvm1, lsvm2 = setup_pair(lab)
    script = "/etc/ha.d/resource.d/drbddisk"
    rc, out = lsvm2.execute(f"{script} drbd0 status")
    assert (rc, out.strip()) == (3, "stopped (Secondary)")
    rc, out = lsvm2.execute(f"{script} drbd0 start")
    assert rc == 0, out
    rc, out = lsvm2.execute(f"{script} drbd0 status")
    assert (rc, out.strip()) == (0, "running (Primary)")
    lsvm2.succeed(f"mkdir -p {MNT} && mount /dev/drbd0 {MNT}")
    rc, out = lsvm2.execute(f"{script} drbd0 stop", timeout=30)
    assert rc == 1 and "held open" in out  # heartbeat's busy-stop path
    lsvm2.succeed(f"umount {MNT}")
    rc, out = lsvm2.execute(f"{script} drbd0 stop")
    assert rc == 0, out
    lsvm1.succeed("drbdadm down drbd0")
    rc, out = lsvm1.execute(f"{script} drbd0 status")
    assert (rc, out.strip()) == (3, "stopped (Unconfigured)")
    assert lsvm1.succeed("drbdadm sh-dev drbd0").strip() == "/dev/drbd0"
    assert lsvm1.succeed("drbdadm sh-minor drbd0").strip() == "0"


def test_on_io_error_detach_keeps_primary_serving_from_peer(lab: Lab) -> None:
    """``on-io-error detach``: an injected disk error detaches the disk, runs local-io-error,
    and the Primary keeps reading and writing through the peer."""
    text = resource_text("ping-int 2;", handlers={
        "local-io-error": "echo local-io-error >> /var/log/handlers.log"})
    lsvm1, lsvm2 = setup_pair(lab, text)
    mount_primary(lsvm2)
    lsvm2.succeed(f"echo before > {MNT}/a && sync -f {MNT}/a")
    lsvm2.succeed("drbdadm lab-io-error on drbd0")
    lsvm2.succeed(f"echo after > {MNT}/b && sync -f {MNT}/b")
    wait(lsvm2, lambda s: s["dstate"] == "Diskless", "detached")
    lsvm2.wait_until_succeeds("grep -q local-io-error /var/log/handlers.log", timeout=10)
    lsvm2.succeed(f"echo 3 > /proc/sys/vm/drop_caches; cat {MNT}/a {MNT}/b")
    assert state(lsvm1)["pdsk"] == "Diskless"


def test_online_verify_finds_exactly_the_corrupted_block(lab: Lab) -> None:
    """``drbdadm verify``: one block changed behind lsvm1's daemon is found, marked out of sync
    on both nodes and reported like DRBD 8.4; the next connect resyncs just that block."""
    lsvm1, lsvm2 = setup_pair(lab, resource_text("ping-int 2;\nverify-alg sha1;"), mkfs=False)
    lsvm2.succeed("drbdadm primary drbd0")
    block = 1000
    with open(service.image_path(lsvm1), "r+b") as f:  # bit rot on lsvm1's disk
        f.seek(block * 4096)
        f.write(os.urandom(4096))
    lsvm2.succeed("drbdadm verify drbd0")
    for node in (lsvm2, lsvm1):
        st = wait(node, lambda s: s["cstate"] == "Connected" and "last_verify" in s,
                  "online verify done", timeout=60)
        assert st["last_verify"]["oos_blocks"] == 1
        assert st["out_of_sync_kib"] == 4
        assert [e["oos_blocks"] for e in events(node, "verify-finished")] == [1]
        assert "out-of-sync" in [e["helper"] for e in events(node, "helper")]
        log = node.path("/var/log/drbd-drbd0.log").read_text()
        assert "Online verify found 1 4k block out of sync!" in log
    lsvm1.succeed("drbdadm disconnect drbd0 && drbdadm connect drbd0")
    st = service.wait_connected(lsvm1, timeout=60)
    assert st["last_resync"]["kib"] == 4  # the block verify found, nothing else
    lsvm2.succeed("drbdadm secondary drbd0")
    assert image_digest(lsvm1) == image_digest(lsvm2)
    lsvm1.succeed("drbdadm disconnect drbd0")
    rc, out = lsvm2.execute("drbdadm verify drbd0")
    assert rc == 11 and "Need a connection to start verify or resync" in out, out


def test_resize_grows_the_device_online_after_both_disks_grew(lab: Lab) -> None:
    """``drbdadm resize``: both backing images grow (lvextend), the mounted device grows to
    the smaller of the two, the new storage resyncs from the Primary, ext4 then grows."""
    lsvm1, lsvm2 = setup_pair(lab)
    mount_primary(lsvm2)
    lsvm2.succeed(f"echo before-resize > {MNT}/kept && sync -f {MNT}/kept")
    old = state(lsvm2)["size_kib"]
    for node, mib in ((lsvm1, 96), (lsvm2, 112)):  # lsvm1's disk is the smaller one
        os.truncate(service.image_path(node), mib * 1024 * 1024)
    lsvm1.succeed("drbdadm resize drbd0")  # asked on the Secondary: the Primary resyncs
    new = data_size_for(96 * 1024 * 1024)
    for node in (lsvm1, lsvm2):
        wait(node, lambda s: s["size_kib"] == new // 1024 and s["cstate"] == "Connected"
             and s["out_of_sync_kib"] == 0, "grown and resynced", timeout=60)
        assert [e["size_kib"] for e in events(node, "resized")] == [new // 1024]
    assert state(lsvm1)["last_resync"]["kib"] == new // 1024 - old  # just the new storage
    assert int(lsvm2.succeed("blockdev --getsize64 /dev/drbd0")) == new
    # the nodes lack CAP_SYS_RESOURCE for ext4's online grow: grow it unmounted
    lsvm2.succeed(f"umount {MNT} && e2fsck -fp /dev/drbd0 && resize2fs /dev/drbd0 && "
                  f"mount /dev/drbd0 {MNT}")
    blocks = int(lsvm2.succeed(f"stat -f -c %b {MNT}"))
    bsize = int(lsvm2.succeed(f"stat -f -c %S {MNT}"))
    assert blocks * bsize > old * 1024  # the filesystem grew past the old device
    assert lsvm2.succeed(f"cat {MNT}/kept").strip() == "before-resize"
    lsvm2.succeed(f"umount {MNT} && fsck.ext4 -fn /dev/drbd0 && drbdadm secondary drbd0")
    assert image_digest(lsvm1) == hashlib.sha256(_data_area(lsvm2, new)).hexdigest()


def _data_area(node: Node, size: int) -> bytes:
    with open(service.image_path(node), "rb") as f:
        return f.read(size)


def test_events_stream_is_monotonic_json(lab: Lab) -> None:
    lsvm1, _ = setup_pair(lab, mkfs=False)
    evs = events(lsvm1)
    assert evs and all({"t_mono", "resource", "role", "cstate", "dstate"} <= set(e)
                       for e in evs if e["event"] == "change")
    ts = [e["t_mono"] for e in evs]
    assert ts == sorted(ts) and ts[-1] <= time.clock_gettime(time.CLOCK_MONOTONIC)
    assert os.path.basename(str(service.image_path(lsvm1))) == "drbd0.img"


@pytest.mark.skipif(not service.real_drbd(),
                    reason="this kernel has no DRBD module (/proc/drbd missing): the real-DRBD "
                           "path (kernel DRBD + the real drbdadm over loop devices) cannot run")
def test_real_drbd_path_same_res_same_checks(lab: Lab) -> None:
    """Where the kernel has DRBD, the same .res and the same bootstrap run on the real thing."""
    lsvm1, lsvm2 = setup_pair(lab)
    assert service.status(lsvm2)["cstate"] == "Connected"
    rc, out = lsvm1.execute("dd if=/dev/drbd0 of=/dev/null bs=4k count=1")
    assert rc != 0 and "Wrong medium type" in out
