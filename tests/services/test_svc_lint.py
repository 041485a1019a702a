"""`lab lint`: the seed passes; each deliberately broken file gives exactly one precise finding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.services.cli import cmd_lint, register
from lab.services.lint import Problem, lint
from lab.services.render import SEED_DIR
from lab.topology import Topology, load_topology

TOPOLOGY = Path(__file__).resolve().parents[2] / "fixtures" / "topology.toml"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


@pytest.fixture
def seed_copy(tmp_path: Path) -> Path:
    target = tmp_path / "seed"
    shutil.copytree(SEED_DIR, target)
    return target


def errors(problems: list[Problem]) -> list[Problem]:
    """The errors only: the seed's own set always carries the findings the lab works around,
    as warnings."""
    return [p for p in problems if p.level == "error"]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_seed_lints_clean(topo: Topology) -> None:
    problems = lint(SEED_DIR, topo)
    assert errors(problems) == []
    assert all(p.message.rstrip(")").endswith(("F1", "F2", "F3", "F14", "F20", "F21", "F22"))
               or "(F" in p.message for p in problems), problems


def test_missing_resource_script(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "haresources", "dnsmasq \\", "dnsmasq \\\nnosuchservice \\")
    (p,) = errors(lint(seed_copy, topo))
    assert p == Problem(str(seed_copy / "haresources"), 9, "error",
                        "resource nosuchservice: no script 'nosuchservice' in "
                        "/etc/ha.d/resource.d or /etc/init.d")


def test_addn_hosts_outside_the_replicated_disk(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "dnsmasq.conf", "addn-hosts=/media/drbd0/dnsmasq/banner_add_hosts",
         "addn-hosts=/etc/banner_add_hosts")
    (p,) = errors(lint(seed_copy, topo))
    assert str(p).startswith(f"{seed_copy}/dnsmasq.conf:9: error: addn-hosts=/etc/banner_add_hosts:"
                             " not on the replicated disk (/srv/drbd0)")


def test_res_address_not_in_topology(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "drbd0.res", "address 192.168.1.7:7788;", "address 192.168.1.99:7788;")
    p, fw = errors(lint(seed_copy, topo))
    # and lsvm1's firewall, which lets DRBD in from 192.168.1.7 only, says so at that rule
    assert (Path(fw.file).name, fw.line) == ("ufw", 4) and "from 192.168.1.99" in fw.message
    assert str(p) == (f"{seed_copy}/drbd0.res:34: error: on lsvm2: address 192.168.1.99 is not "
                      "lsvm2's address in the topology")


def test_vip_on_the_wrong_interface(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "haresources", "192.168.3.4/24/enp2s1.3", "192.168.3.4/24/enp2s1")
    (p,) = errors(lint(seed_copy, topo))
    assert p.line == 5 and "the topology puts 192.168.3.4 on enp2s1.3, not enp2s1" in p.message


def test_unknown_node_name(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "ha.cf", "node lsvm1 lsvm2", "node lsvm1 lsvm9")
    messages = [p.message for p in lint(seed_copy, topo)]
    assert "node lsvm9: no such node (hostname) in the topology" in messages


def test_dnsmasq_test_catches_a_bad_option(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "dnsmasq.conf", "no-negcache", "no-negcache-please")
    (p,) = errors(lint(seed_copy, topo))
    assert p.line == 37 and "dnsmasq --test" in p.message


def test_secret_with_a_loose_mode(seed_copy: Path, topo: Topology) -> None:
    edit(seed_copy / "authkeys", "YOUR_KEY_HERE", "realsecret")
    (seed_copy / "authkeys").chmod(0o644)
    (p,) = errors(lint(seed_copy, topo))
    assert str(p) == f"{seed_copy}/authkeys:1: error: holds a secret but is mode 644 (at most 600)"


def test_keeping_a_finding_makes_lint_report_it(topo: Topology) -> None:
    from lab.services.render import RenderOptions

    problems = errors(lint(SEED_DIR, topo, options=RenderOptions(frozenset({"F3"}))))
    # one error per defect: the kept F3 line, not also its consequences (no script `2601:...`)
    assert [(Path(p.file).name, p.line) for p in problems] == [("haresources", 6),
                                                               ("haresources", 7)]
    assert all("(F3); kept (--keep-finding F3)" in p.message for p in problems)


def test_cli_exit_codes(seed_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert cmd_lint(parser.parse_args(["lint", str(SEED_DIR)])) == 0
    edit(seed_copy / "drbd0.res", "address 192.168.1.7:7788;", "address 192.168.1.99:7788;")
    assert cmd_lint(parser.parse_args(["lint", str(seed_copy)])) == 2
    assert "drbd0.res:34: error:" in capsys.readouterr().out
    assert cmd_lint(parser.parse_args(["lint", str(seed_copy / "nope")])) == 2
