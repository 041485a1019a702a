"""The lab itself in real namespaces: machines, wires, faults, cleanup, parallel labs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import rootns
from lab.lab import Lab
from lab.node import NodeError
from lab.pytest_plugin import LabFactory
from lab.state import labs_dir
from lab.wait import WaitTimeout, wait_for

pytestmark = pytest.mark.lab
LAB = [sys.executable, "-m", "lab.cli"]


def pings(node: object, address: str) -> bool:
    rc, _ = node.execute(f"ping -c1 -W1 -q {address}")  # type: ignore[attr-defined]
    return bool(rc == 0)


def run_lab(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_reachability(lab: Lab) -> None:
    """Every node runs; the VLANs and the router carry traffic."""
    assert {n.name: n.state for n in lab} == dict.fromkeys(lab.nodes, "running")
    for address in ("192.168.1.6", "192.168.1.7", "192.168.1.1"):
        assert pings(lab.c1, address), f"c1 cannot reach {address}"
    assert pings(lab.lsvm2, "2001:db8:4100:13c2::1")
    assert pings(lab.g1, "192.168.3.6")
    assert pings(lab.rtbr1, "203.0.113.10")
    assert pings(lab.lsvm1, "fe80::6eb0:ceff:fee1:7018%enp2s1")
    # the two VLANs are separate broadcast domains: g1 only reaches vlan1 through the router
    route = lab.g1.succeed("ip route get 192.168.1.6")
    assert "via 192.168.3.1" in route
    assert lab.lsvm2.succeed("hostname").strip() == "lsvm2"
    assert lab.lsvm2.succeed("cat /etc/hosts").count("lsvm2") == 1


def test_cli_up_status_exec_down() -> None:
    """`lab up` -> `lab status --json` (documented keys) -> `lab exec` -> `lab down`."""
    name = f"c{os.getpid()}"
    up = run_lab("up", "--name", name, "--stack", "none", "--profile", "fast")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(run_lab("status", "--name", name, "--json").stdout)
        assert {"name", "profile", "network_mode", "nodes"} <= set(status)
        assert status["name"] == name and status["profile"] == "fast"
        assert status["network_mode"] in ("vlan-bridges", "8021q")
        assert {n: v["state"] for n, v in status["nodes"].items()} == {
            n: "running" for n in ("rtbr1", "lsvm1", "lsvm2", "inet", "c1", "g1")}
        assert "192.168.1.7/24" in status["nodes"]["lsvm2"]["interfaces"]["enp2s1"]
        assert "192.168.3.7/24" in status["nodes"]["lsvm2"]["interfaces"]["enp2s1.3"]
        ping = run_lab("exec", "--name", name, "c1", "--", "ping", "-c1", "-W1", "192.168.1.7")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        bad = run_lab("exec", "--name", name, "nosuchnode", "--", "true")
        assert bad.returncode == 2 and "no node 'nosuchnode'" in bad.stderr
    finally:
        down = run_lab("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not (labs_dir() / name).exists()


def test_down_leaves_root_namespace_as_before(lab_factory: LabFactory) -> None:
    """After `down` the root namespace is as before: links, addresses, routes, netns, mounts,
    loops, cgroups, processes."""
    before = rootns.snapshot()
    lab = lab_factory()
    pids = [pid for node in lab for pid in node.cgroup.pids()]
    assert len(pids) >= 2 * len(lab.nodes)
    during = rootns.snapshot()
    assert (during.links, during.addresses, during.routes, during.named_netns) == (
        before.links, before.addresses, before.routes, before.named_netns), \
        "a running lab must not add anything to the root namespace's network"
    lab.down()
    after = rootns.snapshot()
    assert rootns.differences(before, after, lab.dir, lab.name) == []
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/status").read_text().split("State:")[1][:3].strip()
                != "Z"]
    assert not lab.dir.exists()


@pytest.mark.slow
def test_twenty_up_down_cycles_leak_nothing(lab_factory: LabFactory) -> None:
    """Twenty up/down cycles leave nothing behind in the root namespace."""
    before = rootns.snapshot()
    for _ in range(20):
        lab = lab_factory()
        assert pings(lab.c1, "192.168.1.1")
        lab.down()
        assert rootns.differences(before, rootns.snapshot(), lab.dir, lab.name) == []
    fds = len(os.listdir("/proc/self/fd"))
    assert fds < 64, f"the test process holds {fds} file descriptors: a leak in the lab code"


def test_sigkill_midway_then_down_all(tmp_path: Path) -> None:
    """`lab up` SIGKILLed at random moments, then `lab down --all` removes every trace; in a
    private lab root so `--all` cannot reach parallel workers' labs."""
    env = {"HAPAIR_LAB_ROOT": str(tmp_path / "root")}
    before = rootns.snapshot()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    delays = [rng.uniform(0.05, 0.7) for _ in range(3)]
    print(f"random seed {seed}: SIGKILL after {delays}")
    for i, delay in enumerate(delays):
        proc = subprocess.Popen([*LAB, "up", "--name", f"k{i}", "--stack", "none"],
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    down = run_lab("down", "--all", env=env)
    assert down.returncode == 0, down.stderr
    after = rootns.snapshot()
    for i in range(3):
        assert rootns.differences(before, after, tmp_path / "root" / "labs" / f"k{i}",
                                  f"k{i}") == []
    assert not list((tmp_path / "root").rglob("lab.json"))
    listed = run_lab("list", env=env)
    assert listed.returncode == 0 and "k0" not in listed.stdout


def test_two_labs_at_once(lab_factory: LabFactory) -> None:
    """Two labs with the same node names and addresses live in separate worlds."""
    a, b = lab_factory(), lab_factory()
    assert pings(a.c1, "192.168.1.7") and pings(b.c1, "192.168.1.7")
    b.lsvm2.crash()
    assert pings(a.c1, "192.168.1.7"), "crashing lab b's lsvm2 must not touch lab a"
    assert not pings(b.c1, "192.168.1.7")
    a.lsvm2.succeed("ip addr add 192.168.1.99/24 dev enp2s1")
    assert pings(a.c1, "192.168.1.99") and not pings(b.c1, "192.168.1.99")


XDIST_INNER = '''
import os, time
from pathlib import Path

def test_{n}(lab):
    out = Path(os.environ["HAPAIR_XDIST_PROBE"])
    (out / lab.name).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while len(list(out.iterdir())) < 2:   # both workers' labs exist at the same time
        assert time.monotonic() < deadline, "the other worker's lab never came up"
        time.sleep(0.05)
    assert lab.c1.execute("ping -c1 -W1 192.168.1.6")[0] == 0
'''


def inner_suite(tmp_path: Path, template: str) -> tuple[Path, Path]:
    """A pytest suite of two tests (`template` as test_a and test_b) for an inner run, and an
    empty directory its tests write their lab names into."""
    tests = tmp_path / "inner"
    tests.mkdir()
    (tests / "conftest.py").write_text('pytest_plugins = ["lab.pytest_plugin"]\n')
    # the second copy without the first one's imports
    (tests / "test_inner.py").write_text(template.replace("{n}", "a") +
                                         template.replace("{n}", "b").split("\n", 3)[3])
    probe = tmp_path / "probe"
    probe.mkdir()
    return tests, probe


@pytest.mark.slow
def test_pytest_xdist_runs_two_labs_at_once(tmp_path: Path) -> None:
    """`pytest -n 2` gives each worker its own lab, up at the same time."""
    tests, probe = inner_suite(tmp_path, XDIST_INNER)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p",
                             "no:cacheprovider", str(tests)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path,
                            env={**os.environ, "HAPAIR_XDIST_PROBE": str(probe)})
    assert result.returncode == 0, result.stdout[-3000:]
    names = sorted(p.name for p in probe.iterdir())
    pids = {p.read_text() for p in probe.iterdir()}
    assert len(names) == 2 and len(pids) == 2, (names, pids)
    assert not [n for n in names if (labs_dir() / n).exists()]


TERM_INNER = '''
import os, time
from pathlib import Path

def test_{n}(lab):
    (Path(os.environ["HAPAIR_TERM_PROBE"]) / lab.name).write_text("up")
    time.sleep(120)
'''


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_to_a_run_removes_its_labs(tmp_path: Path, workers: str) -> None:
    """A cancelled CI job sends SIGTERM to the run's process group: the labs of the tests it
    interrupted are removed as after Ctrl-C, never left up."""
    tests, probe = inner_suite(tmp_path, TERM_INNER)
    inner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-n", workers, "-p",
                              "no:cacheprovider", str(tests)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True,
                             env={**os.environ, "HAPAIR_TERM_PROBE": str(probe)})
    try:
        wait_for(lambda: list(probe.iterdir()), timeout=120, what="the inner run's first lab")
        os.killpg(inner.pid, signal.SIGTERM)
        inner.wait(timeout=120)
    finally:
        if inner.poll() is None:
            os.killpg(inner.pid, signal.SIGKILL)
            inner.wait()
    names = [p.name for p in probe.iterdir()]
    assert names and not [n for n in names if (labs_dir() / n).exists()], names


def neighbour_state(node: object, address: str) -> str:
    out: str = node.succeed(f"ip neigh show {address}")  # type: ignore[attr-defined]
    return out.strip()


def test_crash_takes_the_node_off_the_wire_and_start_restores_it(lab: Lab) -> None:
    """A crash takes the node off the wire at once; start brings it back wired."""
    lsvm1 = lab.lsvm1
    addresses = lsvm1.addresses()
    macs = lsvm1.succeed("cat /sys/class/net/enp2s1/address /sys/class/net/enp2s1.3/address")
    lsvm1.succeed("ip addr add 192.168.1.4/24 dev enp2s1 label enp2s1:0")  # as IPaddr would
    pids = lsvm1.cgroup.pids()
    assert pings(lab.c1, "192.168.1.4")
    lsvm1.crash()
    assert lsvm1.state == "stopped"
    assert lsvm1.cgroup.pids() == []
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
    lab.c1.succeed("ip neigh flush dev eth0")
    for address in ("192.168.1.6", "192.168.1.4"):
        assert not pings(lab.c1, address)
        # no ARP answer at all: the neighbour entry ends INCOMPLETE/FAILED, never REACHABLE
        assert "lladdr" not in neighbour_state(lab.c1, address)
    with pytest.raises(NodeError, match="not running"):
        lsvm1.execute("true")
    lsvm1.start()
    assert lsvm1.state == "running"
    restored = lsvm1.addresses()
    assert {k: [a for a in v if "fe80" not in a] for k, v in restored.items()} == \
           {k: [a for a in v if "fe80" not in a] for k, v in addresses.items()}, \
        "start() must restore the topology's addresses and nothing else (the VIP died)"
    assert lsvm1.succeed("cat /sys/class/net/enp2s1/address /sys/class/net/enp2s1.3/address") \
        == macs
    assert pings(lab.c1, "192.168.1.6")
    assert not pings(lab.c1, "192.168.1.4")


def test_freeze_stops_every_process_and_thaw_resumes(lab: Lab) -> None:
    """Freeze is the kernel freezer, not signals; the network stays up meanwhile."""
    node = lab.lsvm2
    ticker = node.popen(["sh", "-c", "while :; do date +%s%N > /tmp/tick; sleep 0.02; done"])

    def tick() -> str:
        return (node.root / "tmp/tick").read_text()
    wait_for(lambda: (node.root / "tmp/tick").exists(), timeout=5, what="the ticker to start")
    node.freeze()
    assert node.state == "frozen"
    frozen_at = tick()
    time.sleep(0.3)
    assert tick() == frozen_at, "a process kept running in a frozen node"
    states = {Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
              for pid in node.cgroup.pids()}
    assert states <= {"D", "S"}, states
    assert lab.c1.execute("ping -c1 -W1 -q 192.168.1.7")[0] == 0, \
        "the kernel (not a process) answers ping, frozen or not"
    node.thaw()
    assert node.state == "running"
    wait_for(lambda: tick() != frozen_at, timeout=5, what="the ticker to resume")
    ticker.kill()


def test_cable_pull_takes_every_vlan_down_vlan_cut_only_one(lab: Lab) -> None:
    lsvm1, c1, g1 = lab.lsvm1, lab.c1, lab.g1
    lsvm1.block("enp2s1")  # the cable: both VLANs of the port
    assert not pings(c1, "192.168.1.6") and not pings(g1, "192.168.3.6")
    assert "NO-CARRIER" in lsvm1.succeed("ip link show enp2s1.3")
    lsvm1.unblock("enp2s1")
    wait_for(lambda: pings(c1, "192.168.1.6") and pings(g1, "192.168.3.6"), timeout=10,
             what="lsvm1 back on both VLANs")
    lsvm1.block("enp2s1.3")  # one VLAN off the switch port, the link stays up
    assert not pings(g1, "192.168.3.6")
    assert pings(c1, "192.168.1.6")
    assert "NO-CARRIER" not in lsvm1.succeed("ip link show enp2s1.3")
    lsvm1.unblock("enp2s1.3")
    assert pings(g1, "192.168.3.6")
    lsvm1.block_vlan("enp2s1")  # the untagged VLAN only
    assert not pings(c1, "192.168.1.6") and pings(g1, "192.168.3.6")
    lsvm1.unblock_vlan("enp2s1")
    assert pings(c1, "192.168.1.6")
    with pytest.raises(NodeError, match="no port or interface 'eth9'"):
        lsvm1.block("eth9")


def test_cli_cut_and_heal(lab: Lab) -> None:
    cut = run_lab("cut", "--name", lab.name, "lsvm2:enp2s1")
    assert cut.returncode == 0, cut.stderr
    assert not pings(lab.c1, "192.168.1.7")
    heal = run_lab("heal", "--name", lab.name, "lsvm2:enp2s1")
    assert heal.returncode == 0, heal.stderr
    wait_for(lambda: pings(lab.c1, "192.168.1.7"), timeout=10, what="lsvm2 reachable again")
    bad = run_lab("cut", "--name", lab.name, "lsvm2")
    assert bad.returncode == 2 and "expected NODE:IFACE" in bad.stderr


def test_shutdown_and_reboot(lab: Lab) -> None:
    lab.inet.shutdown()
    assert lab.inet.state == "stopped" and lab.inet.cgroup.pids() == []
    assert not pings(lab.rtbr1, "203.0.113.10")
    lab.inet.start()
    # rtbr1 still holds the failed ARP entry from the ping above and re-probes on its own 1 s
    # timer, so the first ping after the start may wait longer than its -W1: wait for it
    wait_for(lambda: pings(lab.rtbr1, "203.0.113.10"), timeout=10, what="inet reachable again")
    lab.inet.succeed("touch /srv/survives-reboot /run/volatile")
    lab.inet.reboot()
    assert lab.inet.execute("test -e /srv/survives-reboot")[0] == 0
    assert lab.inet.execute("test -e /run/volatile")[0] != 0


def test_node_private_filesystems(lab: Lab) -> None:
    lab.lsvm1.succeed("echo one > /etc/ha.d/marker && echo tmp > /tmp/marker")
    assert lab.lsvm2.execute("test -e /etc/ha.d/marker")[0] != 0
    assert lab.lsvm2.execute("test -e /tmp/marker")[0] != 0
    assert not Path("/etc/ha.d/marker").exists()
    assert lab.lsvm1.path("/etc/ha.d/marker").read_text() == "one\n"
    assert (lab.lsvm1.root / "tmp/marker").read_text() == "tmp\n"
    devs = set(lab.lsvm1.succeed("ls /dev").split())
    assert {"null", "zero", "urandom", "fuse", "loop-control", "pts", "shm"} <= devs
    assert "sda" not in devs and "vda" not in devs
    assert lab.lsvm1.succeed("ps -e -o pid=").split()[0] == "1"
    assert lab.lsvm1.succeed("ls /sys/class/net").split() == ["enp2s1", "enp2s1.3", "lo"]


def test_testinfra_host_inside_a_node(lab: Lab) -> None:
    host = lab.lsvm2.host
    assert host.file("/etc/hosts").contains("lsvm2")
    assert "192.168.1.7" in host.interface("enp2s1").addresses
    assert host.run("hostname").stdout.strip() == "lsvm2"


def test_waits_time_out_with_what_and_last_output(lab: Lab) -> None:
    with pytest.raises(WaitTimeout) as info:
        lab.c1.wait_until_succeeds("echo not-yet; false", timeout=0.3)
    assert "`echo not-yet; false` to succeed" in str(info.value)
    assert "not-yet" in str(info.value)
    with pytest.raises(WaitTimeout, match="listening on 5353/udp"):
        lab.c1.wait_for_open_port(5353, "udp", timeout=0.3)
    server = lab.c1.popen(["python3", "-c", "import socket,time; s=socket.socket(); "
                           "s.bind(('0.0.0.0', 8080)); s.listen(); time.sleep(30)"])
    lab.c1.wait_for_open_port(8080, timeout=10)
    server.kill()


def test_bad_topology_is_refused_with_exit_2_and_nothing_created(tmp_path: Path) -> None:
    """A bad topology is refused with exit 2 and nothing is created."""
    from lab.lab import DEFAULT_TOPOLOGY
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_TOPOLOGY.read_text()
                   .replace('"192.168.1.6/24"', '"192.168.9.6/24"')
                   .replace("[nodes.lsvm1.interfaces.\"enp2s1.3\"]",
                            "[nodes.lsvm1.interfaces.\"enp2s1.3-too-long\"]"))
    name = f"b{os.getpid()}"
    before = rootns.snapshot()
    result = run_lab("up", "--name", name, "--topology", str(bad), "--stack", "none")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"{bad}: nodes.lsvm1.interfaces.enp2s1.addresses[0]: 192.168.9.6/24 is not inside " \
           "segment vlan1 (192.168.1.0/24)" in lines
    assert any(line.startswith(f"{bad}: nodes.lsvm1.interfaces.enp2s1.3-too-long: interface "
                               "name") for line in lines)
    assert not (labs_dir() / name).exists()
    assert rootns.differences(before, rootns.snapshot(), labs_dir() / name, name) == []


def test_crash_of_a_frozen_node(lab: Lab) -> None:
    lab.lsvm2.freeze()
    lab.lsvm2.crash()
    assert lab.lsvm2.state == "stopped" and lab.lsvm2.cgroup.pids() == []
    lab.lsvm2.start()
    assert pings(lab.c1, "192.168.1.7")


def test_8021q_trunk_mode(lab: Lab) -> None:
    """Real 802.1Q sub-interfaces over a VLAN-filtering trunk, where the kernel has them."""
    if lab.identity["network_mode"] != "8021q":
        pytest.skip(f"kernel lacks 802.1Q here: {lab.identity['network_mode_reason']}")
    link = lab.lsvm1.succeed("ip -d link show enp2s1.3")
    assert "vlan protocol 802.1Q id 3" in link
    assert pings(lab.g1, "192.168.3.6") and pings(lab.c1, "192.168.1.6")
    lab.lsvm1.block("enp2s1.3")
    assert not pings(lab.g1, "192.168.3.6") and pings(lab.c1, "192.168.1.6")


def test_reboot_inside_a_node_power_cycles_it(lab: Lab) -> None:
    """`reboot -f` run inside a node (as the seed's DRBD handlers do) power-cycles that node
    through the lab's power agent; plain `reboot` is an orderly one."""
    node = lab.lsvm1
    first = node.init_pid
    node.succeed("touch /run/volatile /srv/kept")
    node.popen(["sh", "-c", "reboot -f"])
    wait_for(lambda: node.runtime is not None and node.init_pid != first, timeout=20,
             what="lsvm1 to come back with a new PID 1")
    node.wait_settled()
    assert node.execute("test -e /run/volatile")[0] != 0
    assert node.execute("test -e /srv/kept")[0] == 0
    assert pings(lab.c1, "192.168.1.6")
    events = [e["event"] for e in lab.events() if e.get("node") == "lsvm1"]
    assert events[-3:] == ["node.power_request", "node.crash", "node.start"], events
    node.popen(["sh", "-c", "poweroff"])
    wait_for(lambda: node.state == "stopped", timeout=20, what="lsvm1 to power off")
    events = [e["event"] for e in lab.events() if e.get("node") == "lsvm1"]
    assert events[-2:] == ["node.power_request", "node.shutdown"], events
