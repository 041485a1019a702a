"""The CLI's pure parts and its refusals (nothing here brings a lab up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from lab.cli import build_parser, services_table
from lab.lab import DEFAULT_TOPOLOGY
from lab.state import labs_dir

STATUS = {
    "vip": {"192.168.1.4": "lsvm2", "192.168.3.4": None},
    "services": {"lsvm1": {"heartbeat": True, "dnsmasq": False, "ddclient": False},
                 "lsvm2": {"heartbeat": True, "dnsmasq": True, "ddclient": True}},
    "drbd": {"lsvm1": {"role": "Secondary", "cstate": "Connected", "dstate": "UpToDate"},
             "lsvm2": {"role": "Primary", "cstate": "Connected", "dstate": "UpToDate"}},
    "mounts": {"lsvm1": [], "lsvm2": ["/srv/drbd0"]},
}


def render(table: object) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def test_services_table_shows_who_holds_what() -> None:
    text = render(services_table(STATUS))
    lsvm2 = next(line for line in text.splitlines() if "lsvm2" in line)
    assert "192.168.1.4" in lsvm2 and "Primary Connected/UpToDate" in lsvm2
    assert "/srv/drbd0" in lsvm2
    lsvm1 = next(line for line in text.splitlines() if "lsvm1" in line)
    assert "Secondary" in lsvm1 and "192.168.1.4" not in lsvm1
    assert "held by nobody: 192.168.3.4" in text


def test_every_documented_command_exists() -> None:
    parser = build_parser()
    for argv in (["up", "--profile", "fast", "--stack", "none"], ["down", "--all"], ["list"],
                 ["status", "--json"], ["exec", "c1", "--", "true"], ["shell", "lsvm2"],
                 ["doctor"], ["crash", "lsvm2"], ["start", "lsvm2"], ["shutdown", "lsvm2"],
                 ["reboot", "lsvm2"], ["freeze", "lsvm2"], ["thaw", "lsvm2"],
                 ["cut", "lsvm1:enp2s1"], ["heal", "lsvm1:enp2s1"], ["lint"], ["watch"],
                 ["measure", "--duration", "1", "--json"], ["changes"], ["findings"],
                 ["up", "--keep-finding", "F1"]):
        assert parser.parse_args(argv).handler is not None, argv


def test_up_refuses_a_configuration_lint_rejects(tmp_path: Path) -> None:
    """The seed's .res names 192.168.1.6: a topology that moves lsvm1 fails `lab lint`."""
    topo = tmp_path / "moved.toml"
    topo.write_text(DEFAULT_TOPOLOGY.read_text().replace('"192.168.1.6/24"',
                                                         '"192.168.1.16/24"'))
    name = f"lint{os.getpid() % 100000}"
    result = subprocess.run([sys.executable, "-m", "lab.cli", "up", "--name", name,
                             "--topology", str(topo), "--stack", "seed"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "drbd0.res" in result.stderr and "192.168.1.6" in result.stderr
    assert ": error: " in result.stderr
    assert not (labs_dir() / name).exists()


def test_services_table_shows_each_servers_firewall() -> None:
    status = {**STATUS, "firewall": {
        "lsvm1": {"active": True, "rules": 31, "denied": 4, "dropped": 0},
        "lsvm2": {"active": False, "rules": 0, "denied": 0, "dropped": 0}}}
    text = render(services_table(status))
    assert "firewall" in text and "31 rules" in text and "4 denied" in text
    assert "not loaded" in text
    assert "firewall" not in render(services_table(STATUS))  # a lab without one: no column
