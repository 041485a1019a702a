"""The lean IPaddr of profile `fast`: a visible change, and the package's effect on the node."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.services.agents import IPADDR_WRAPPER_PATH
from lab.services.profiles import load_profile
from lab.services.render import (
    NodeConfig,
    RenderOptions,
    Secrets,
    all_changes,
    load_seed,
    render_pair,
)

SECRETS = Secrets("AUTHKEY-x", "DRBD-x", "DDNS-x")


def configs(profile: str, ipaddr: str | None = None) -> dict[str, NodeConfig]:
    return render_pair(load_seed(), load_profile(profile), SECRETS, RenderOptions(ipaddr=ipaddr))


def lean_text() -> str:
    return configs("fast")["lsvm1"].file(IPADDR_WRAPPER_PATH).content


def test_seed_keeps_the_packages_ipaddr_and_fast_says_what_it_changes() -> None:
    assert IPADDR_WRAPPER_PATH not in {f.path for f in configs("seed")["lsvm1"].files}
    assert IPADDR_WRAPPER_PATH not in {f.path for f in configs("fast", "stock")["lsvm1"].files}
    fast = configs("fast")
    wrapper = fast["lsvm2"].file(IPADDR_WRAPPER_PATH)
    assert wrapper.mode == 0o755 and "label" in wrapper.content
    rows = [c for c in all_changes(fast) if c.file == IPADDR_WRAPPER_PATH]
    assert len(rows) == 1 and "ipaddr=lean" in rows[0].why
    assert not [c for c in all_changes(configs("seed")) if c.file == IPADDR_WRAPPER_PATH]
    assert [c.file for c in all_changes(configs("seed", "lean"))].count(IPADDR_WRAPPER_PATH) == 1
    assert subprocess.run(["sh", "-n"], input=wrapper.content, text=True).returncode == 0


def test_the_package_arp_schedule_is_kept() -> None:
    """10 gratuitous ARPs 500 ms apart, as the package's OCF IPaddr sends them by default."""
    assert "-i 500 -r 10" in lean_text()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/etc/ha.d/resource.d/hto-mapfuncs").exists()
    or not Path("/usr/libexec/heartbeat/send_arp").exists(),
    reason="needs root (private network and mount namespaces) and heartbeat's scripts")


def run_in_namespaces(agent: Path, script: str) -> list[str]:
    """`script` in a throwaway network namespace with a private /run, so the agent's send_arp
    PID file never reaches the host's. Lines of `name=value` or numbers only."""
    prologue = f"""
        mount -t tmpfs none /run || exit 9
        ip link add enp2s1 type veth peer name peer0 && ip link set enp2s1 up || exit 9
        ip link set peer0 up
        ip addr add 192.168.1.6/24 dev enp2s1
        A="sh {agent}"
    """
    done = subprocess.run(["unshare", "-n", "-m", "--propagation", "private", "sh", "-c",
                           prologue + script], capture_output=True, text=True, timeout=60)
    return [ln for ln in done.stdout.splitlines() if "=" in ln or ln.isdigit()]


@needs_root
def test_start_status_stop_as_resource_manager_calls_them(tmp_path: Path) -> None:
    """The address goes on the first free alias label with its broadcast, once; send_arp runs
    in the background from start until stop; stop takes both away."""
    agent = tmp_path / "IPaddr"
    agent.write_text(lean_text())
    lines = run_in_namespaces(agent, """
        ip addr add 192.168.1.9/24 dev enp2s1 label enp2s1:0
        $A 192.168.1.4/24/enp2s1 status; echo "before=$?"
        $A 192.168.1.4/24/enp2s1 start; echo "start=$?"
        $A 192.168.1.4/24/enp2s1 start; echo "again=$?"
        $A 192.168.1.4/24/enp2s1 status; echo "running=$?"
        ip -4 -o addr show dev enp2s1 | grep -c '192.168.1.4/24 brd 192.168.1.255 .* enp2s1:1'
        pid=$(cat /run/resource-agents/send_arp-192.168.1.4)
        case $(ps -o stat= -p "$pid") in ""|Z*) echo "arping=0";; *) echo "arping=1";; esac
        $A 192.168.1.4/24/enp2s1 stop; echo "stop=$?"
        $A 192.168.1.4/24/enp2s1 status; echo "after=$?"
        ip -4 -o addr show dev enp2s1 | grep -c '192.168.1.4/'
        for i in $(seq 40); do  # a signal is delivered at the next tick: wait up to 2 s
            case $(ps -o stat= -p "$pid") in ""|Z*) echo "arping=0"; break;; esac
            sleep 0.05
        done
        ip -4 -o addr show dev enp2s1 | grep -c '192.168.1.9/24 .* enp2s1:0'
    """)
    assert lines == ["before=3", "start=0", "again=0", "running=0", "1", "arping=1", "stop=0",
                     "after=3", "0", "arping=0", "1"]


@needs_root
def test_an_argument_without_prefix_or_interface_fails_and_says_so(tmp_path: Path) -> None:
    agent = tmp_path / "IPaddr"
    agent.write_text(lean_text())
    lines = run_in_namespaces(agent, """
        $A 192.168.1.4 start; echo "bare=$?"
        $A 192.168.1.4/24 start; echo "nonic=$?"
        ip -4 -o addr show dev enp2s1 | grep -c '192.168.1.4/'
    """)
    assert lines == ["bare=1", "nonic=1", "0"]
    done = subprocess.run(["unshare", "-n", "-m", "sh", str(agent), "192.168.1.4", "start"],
                          capture_output=True, text=True, timeout=30)
    assert "192.168.1.4: expected ADDR/PREFIX/NIC" in done.stdout


def test_a_stack_takes_the_profiles_agent_unless_told_and_refuses_an_unknown_one() -> None:
    from lab.services.stack import SeedStack
    assert (SeedStack("fast").ipaddr, SeedStack("seed").ipaddr) == ("lean", "stock")
    assert SeedStack("fast", ipaddr="stock").options().ipaddr == "stock"
    with pytest.raises(ValueError, match="ipaddr: 'nonblocking' is not one of stock, lean"):
        SeedStack("fast", ipaddr="nonblocking")
    with pytest.raises(ValueError, match="ipv6addr: 'lean' is not one of stock, nonblocking"):
        SeedStack("fast", ipv6addr="lean")
