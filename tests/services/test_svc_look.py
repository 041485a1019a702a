"""One look at a server (services, mounts, heartbeat's view, firewall) parsed from one output."""

from __future__ import annotations

from lab.services import firewall
from lab.services.stack import LOOK_SCRIPT, parse_look

ACTIVE = """%% services
heartbeat
dnsmasq
ddclient
%% mounts
proc /proc proc rw,nosuid 0 0
/dev/drbd0 /srv/drbd0 ext4 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
%% heartbeat
lsvm1 active
lsvm2 active
rsc all
%% firewall
table inet ufw {
	chain input {
		type filter hook input priority filter; policy drop;
		ip saddr 192.168.1.6 udp dport 694 counter packets 12 bytes 2000 accept
		counter packets 3 bytes 180 drop comment "ufw default policy"
	}
}
"""


def test_an_active_servers_look_has_every_part() -> None:
    look = parse_look(ACTIVE)
    assert look["services"] == {"heartbeat": True, "dnsmasq": True, "ddclient": True}
    assert look["mounts"] == ["/srv/drbd0"]
    assert look["heartbeat"] == {"running": True, "nodes": {"lsvm1": "active",
                                                            "lsvm2": "active"},
                                 "resources": "all"}
    assert firewall.summary(look["firewall"])["active"] is True


def test_a_server_without_heartbeat_has_no_view_and_no_firewall() -> None:
    look = parse_look("%% services\n%% mounts\nproc /proc proc rw 0 0\n%% heartbeat\n"
                      "%% firewall\n")
    assert look["services"] == {"heartbeat": False, "dnsmasq": False, "ddclient": False}
    assert look["mounts"] == [] and look["heartbeat"] == {"running": False}
    assert firewall.summary(look["firewall"])["active"] is False


def test_the_script_prints_every_section_the_parser_reads() -> None:
    for name in ("services", "mounts", "heartbeat", "firewall"):
        assert f"echo '%% {name}'" in LOOK_SCRIPT
