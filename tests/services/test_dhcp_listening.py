"""Reading which UDP ports a node listens on, from a recorded /proc/PID/net/udp (the preferred
server of a ready fast lab: DNS 53, DHCP 67, heartbeat's 694 twice, two ephemeral ports)."""

from __future__ import annotations

from pathlib import Path

from lab.services.health import DHCP_SERVER_PORT, udp_ports

DATA = Path(__file__).parent.parent / "data"


def test_ports_of_the_active_server() -> None:
    ports = udp_ports((DATA / "lsvm2-active.proc-net-udp").read_text())
    assert ports == {53, 67, 694, 0x841A, 0xD209}
    assert DHCP_SERVER_PORT in ports


def test_a_server_without_dnsmasq_has_no_dhcp_port() -> None:
    lines = (DATA / "lsvm2-active.proc-net-udp").read_text().splitlines()
    without = "\n".join(line for line in lines if ":0043 " not in line and ":0035 " not in line)
    assert DHCP_SERVER_PORT not in udp_ports(without)
    assert udp_ports(lines[0]) == set()  # the header alone


IF_INET6 = """\
20010db8410013c20000c0fffea801c1 02 40 00 40     eth0
fe800000000000000000c0fffea801c1 02 40 20 82     eth0
20010db8410013c20000c0fffea80199 02 40 00 48     eth0
00000000000000000000000000000001 01 80 10 80       lo
"""


def test_inet6_addresses_with_their_flags() -> None:
    import ipaddress

    from lab.services.health import inet6_addresses, usable
    rows = inet6_addresses(IF_INET6)
    assert [(str(a), i) for a, i, _ in rows] == [
        ("2001:db8:4100:13c2:0:c0ff:fea8:1c1", "eth0"), ("fe80::c0ff:fea8:1c1", "eth0"),
        ("2001:db8:4100:13c2:0:c0ff:fea8:199", "eth0"), ("::1", "lo")]
    prefix = ipaddress.IPv6Network("2001:db8:4100:13c2::/64")
    # the first is still in DAD (0x40), the third failed it (0x48): neither is usable yet
    assert [str(a) for a, _, flags in rows if a in prefix and usable(flags)] == []
    assert usable(0x00) and usable(0x80) and usable(0x82)  # done; permanent; nodad
    assert usable(0x44)  # tentative but optimistic: the kernel sends from it already
