"""`lab lint` on the seed as a reader pastes it: the page's own blocks, typography and all.

The blocks are cut from the page (`shared/seed/000_c9abd44ae515f2d6.txt`, beside the clone) by
the line ranges in BLOCKS, each checked by its first and last line's text (and found by that text
if the page's lines moved), never retyped. They are written as the files a reader creates, lint
runs once, and every defect must be reported exactly once, on its line; nothing else may be.
The claims the messages make about each reader are checked against the real programs too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.services.cli import cmd_lint, register
from lab.services.findings import BY_ID
from lab.services.lint import Problem, lint
from lab.services.render import SEED_DIR, RenderOptions
from lab.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO.parent / "shared" / "seed" / "000_c9abd44ae515f2d6.txt"
TOPOLOGY = REPO / "fixtures" / "topology.toml"

# file a reader creates <- the page's lines (first, last), with their first and last line's text
BLOCKS: tuple[tuple[str, int, int, str, str], ...] = (
    ("interfaces.lsvm1", 54, 70, "source /etc/network/interfaces.d/*", "iface enp2s1.3 inet6 auto"),
    ("drbd0.res", 118, 154, "resource drbd0 {", "}"),
    ("default-dnsmasq", 201, 202, "DNSMASQ_OPTS=”–conf-file=/srv/drbd0/dnsmasq/dnsmasq.conf",
     "ENABLED=1"),
    ("dnsmasq.conf", 206, 247, "domain-needed",
     "cname=smtp.internal.thesteins.org,lsvm4.internal.thesteins.org"),
    ("banner_add_hosts", 251, 261, "192.168.1.1\u00a0", "192.168.3.7\u00a0"),
    ("ddclient.conf", 287, 292, "protocol=namecheap", "@,imap,smtp"),
    ("default-ddclient", 298, 299, "run_ipup=”false”", "run_daemon=”true”"),
    ("authkeys", 313, 314, "auth 3", "3 md5 YOUR_KEY_HERE"),
    ("ha.cf", 322, 330, "auto_failback on", "warntime 5000ms"),
    ("haresources", 337, 345, "lsvm2 \\", "ddclient"),
    # the firewall is typed, not a file: its `ufw allow` lines, in page order, as the set's `ufw`
    ("ufw", 164, 167, "lsvm1$ sudo ufw allow from 192.168.1.7 to any port 7788 proto tcp",
     "lsvm2$ sudo ufw allow from 192.168.1.6 to any port 7789 proto tcp"),
    ("ufw", 265, 267, "$ sudo ufw allow from any to any port 53 proto tcp",
     "$ sudo ufw allow from any to any port 67 proto udp"),
    ("ufw", 349, 349, "$ sudo ufw allow from 192.168.1.6 to any port 694 proto udp",
     "$ sudo ufw allow from 192.168.1.6 to any port 694 proto udp"),
)

# Every defect of the pasted set, by the page line it is on: (page line, level, what it says).
DEFECTS: tuple[tuple[int, str, str], ...] = (
    *((n, "error", "typographic quote") for n in (129, 130, 131, 132, 133, 137)),
    (144, "error", "`–` in `/dev/mapper/lsvm1–vg2-drbd0`"),
    (150, "error", "`–` in `/dev/mapper/lsvm2–vg2-drbd0`"),
    (201, "error", "`–conf-file` is not the option `--conf-file`"),
    (201, "error", "not a quote to sh"),
    (201, "error", "never closed"),
    (214, "warning", "(F1)"),
    (220, "warning", "(F22)"),
    *((n, "warning", "(F2)") for n in (231, 232, 235, 236)),
    *((n, "error", "no-break space") for n in range(251, 262)),
    (291, "error", "takes only `'` and `\"` as quotes"),
    (291, "warning", "never closed"),
    (298, "warning", "harmless with Debian 12's ddclient"),
    (299, "warning", "harmless with Debian 12's ddclient"),
    (342, "warning", "(F3)"),
    (343, "warning", "(F3)"),
    (342, "warning", "(F14)"),
    (343, "warning", "(F14)"),
    (165, "warning", "(F21)"),
    (167, "warning", "(F21)"),
    (349, "warning", "(F20)"),
)
FIXED = frozenset(f.id for f in BY_ID.values() if f.fixed_by_lab)


def page_lines() -> list[str]:
    if not PAGE.is_file():
        pytest.skip(f"the seed's page is not beside the clone: {PAGE} (CI lays shared/ there)")
    return PAGE.read_text().splitlines()


def locate(lines: list[str], first: int, last: int, first_text: str, last_text: str
           ) -> tuple[int, int]:
    """The block's page lines (1-based): where the table says, else found by its texts."""
    if lines[first - 1].startswith(first_text) and lines[last - 1].startswith(last_text):
        return first, last
    starts = [i + 1 for i, ln in enumerate(lines) if ln.startswith(first_text)]
    assert len(starts) == 1, f"{first_text!r} is on page lines {starts}, expected once"
    end = starts[0] + (last - first)
    assert lines[end - 1].startswith(last_text), f"block from {starts[0]} does not end as said"
    return starts[0], end


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, tuple[str, int]]]:
    """The set a reader creates, and where each page line went: page line -> (file, line)."""
    lines = page_lines()
    target = tmp_path_factory.mktemp("pasted")
    texts: dict[str, list[str]] = {}
    where: dict[int, tuple[str, int]] = {}
    for name, first, last, first_text, last_text in BLOCKS:
        start, end = locate(lines, first, last, first_text, last_text)
        body = texts.setdefault(name, [])
        for page_no in range(start, end + 1):
            body.append(lines[page_no - 1])
            where[page_no] = (name, len(body))
    for name, body in texts.items():
        (target / name).write_text("\n".join(body) + "\n")
    return target, where


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def on(problems: list[Problem], name: str, line: int) -> list[Problem]:
    return [p for p in problems if Path(p.file).name == name and p.line == line]


def test_every_defect_of_the_pasted_page_once_on_its_line(
        pasted: tuple[Path, dict[int, tuple[str, int]]], topo: Topology) -> None:
    directory, where = pasted
    problems = lint(directory, topo)
    matched: set[Problem] = set()
    for page_no, level, says in DEFECTS:
        name, line = where[page_no]
        hits = [p for p in on(problems, name, line) if p.level == level and says in p.message]
        assert len(hits) == 1, (f"page line {page_no} ({name}:{line}): expected one {level} "
                                f"saying {says!r}, got {hits or on(problems, name, line)}")
        matched.add(hits[0])
    extra = [str(p) for p in problems if p not in matched]
    assert not extra, "reported but not a defect of the page:\n" + "\n".join(extra)


def test_keeping_the_findings_makes_them_errors_still_once(
        pasted: tuple[Path, dict[int, tuple[str, int]]], topo: Topology) -> None:
    directory, where = pasted
    problems = lint(directory, topo, options=RenderOptions(keep_findings=FIXED))
    for page_no, _level, says in DEFECTS:
        finding = re.fullmatch(r"\((F\d+)\)", says)
        if finding is None or finding.group(1) not in FIXED:
            continue
        name, line = where[page_no]
        hits = [p for p in on(problems, name, line) if says in p.message]
        assert len(hits) == 1 and hits[0].level == "error", (page_no, hits)
        assert f"kept (--keep-finding {finding.group(1)})" in hits[0].message
    # a kept finding's consequences (heartbeat's "no script '2601:...'") are not extra problems
    assert len(problems) == len(lint(directory, topo))


def test_the_cli_exits_2_on_the_pasted_page_and_0_on_the_repaired_copy(
        pasted: tuple[Path, dict[int, tuple[str, int]]], capsys: pytest.CaptureFixture[str]
        ) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert cmd_lint(parser.parse_args(["lint", str(pasted[0])])) == 2
    assert cmd_lint(parser.parse_args(["lint", str(SEED_DIR)])) == 0
    assert "0 error(s), 13 warning(s)" in capsys.readouterr().err


def test_the_repaired_copy_reports_only_the_findings_the_lab_works_around(topo: Topology) -> None:
    problems = lint(SEED_DIR, topo)
    assert {p.level for p in problems} == {"warning"}
    named = {m.group(1) for p in problems for m in [re.search(r"\((F\d+)\)", p.message)] if m}
    assert named == FIXED | {"F21"}, problems  # F21: harmless, nothing to work around
    assert all(re.search(r"\(F\d+\)", p.message) for p in problems), problems


def test_a_file_that_cannot_be_rendered_is_one_error_among_the_others(tmp_path: Path,
                                                                      topo: Topology) -> None:
    target = tmp_path / "set"
    shutil.copytree(SEED_DIR, target)
    (target / "default-dnsmasq").write_text("ENABLED=1\n")
    (target / "drbd0.res").write_text((target / "drbd0.res").read_text().replace(
        "protocol C;", "protocol D;"))
    problems = [p for p in lint(target, topo) if p.level == "error"]
    assert [Path(p.file).name for p in problems] == ["default-dnsmasq", "drbd0.res"], problems
    assert "cannot render" in problems[0].message and "protocol 'D'" in problems[1].message


# -- the messages' claims, against the real programs ----------------------------------------------
def _need(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        pytest.skip(f"{program} is not installed")
    return found


def test_drbdadm_refuses_the_pasted_res_at_its_first_typographic_line(
        pasted: tuple[Path, dict[int, tuple[str, int]]], tmp_path: Path) -> None:
    drbdadm = _need("drbdadm")
    res = pasted[0] / "drbd0.res"
    out = subprocess.run([drbdadm, "-c", str(res), "dump"], capture_output=True, text=True,
                         errors="replace", timeout=30, check=False)
    assert f"{res}:12: Parse error: ';' expected" in out.stderr, out.stderr
    # and the en-dash alone (quotes straightened) stops it too, at the disk line
    fixed = tmp_path / "dash.res"
    fixed.write_text(re.sub("[“”]", '"', res.read_text()))
    out = subprocess.run([drbdadm, "-c", str(fixed), "dump"], capture_output=True, text=True,
                         errors="replace", timeout=30, check=False)
    assert f"{fixed}:27: Parse error: ';' expected" in out.stderr, out.stderr


def test_sh_and_dnsmasq_take_the_pasted_default_dnsmasq_as_the_messages_say(
        pasted: tuple[Path, dict[int, tuple[str, int]]], tmp_path: Path) -> None:
    _need("dnsmasq")
    path = pasted[0] / "default-dnsmasq"
    value = subprocess.run(["sh", "-c", f'. {path}; printf %s "$DNSMASQ_OPTS"'],
                           capture_output=True, text=True, timeout=10, check=True).stdout
    assert value == "”–conf-file=/srv/drbd0/dnsmasq/dnsmasq.conf"
    out = subprocess.run(["sh", "-c", f". {path}; dnsmasq --test $DNSMASQ_OPTS"],
                         capture_output=True, text=True, timeout=10, check=False)
    assert out.returncode != 0 and "junk found in command line" in out.stderr, out
    straight = tmp_path / "straight"
    straight.write_text(path.read_text().replace("”", '"'))
    out = subprocess.run(["sh", "-n", str(straight)], capture_output=True, text=True, timeout=10,
                         check=False)
    assert out.returncode != 0 and "Unterminated quoted string" in out.stderr, out


def test_ddclients_parser_keeps_the_typographic_quote_in_the_password(
        pasted: tuple[Path, dict[int, tuple[str, int]]], tmp_path: Path) -> None:
    ddclient = Path(_need("ddclient"))
    source = ddclient.read_text()
    sub = re.search(r"^sub parse_assignment \{.*?^\}", source, re.S | re.M)
    assert sub is not None, "ddclient's parse_assignment not found"
    script = tmp_path / "parse.pl"
    script.write_text("sub warning { printf STDERR shift . \"\\n\", @_ }\n" + sub.group(0) +
                      "\nmy ($n, $v) = parse_assignment($ARGV[0]); print \"$n=$v\";\n")
    line = (pasted[0] / "ddclient.conf").read_text().splitlines()[4]
    out = subprocess.run(["perl", str(script), line], capture_output=True, text=True,
                         timeout=10, check=True)
    assert out.stdout == "password=’YOUR_PASSWORD_SUPPLIED_BY_NAMECHEAP"
    out = subprocess.run(["perl", str(script), line.replace("’", "'")], capture_output=True,
                         text=True, timeout=10, check=True)
    assert "ended with an unterminated quote" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a scratch network namespace")
def test_dnsmasq_reads_no_name_from_the_pasted_hosts_file(
        pasted: tuple[Path, dict[int, tuple[str, int]]]) -> None:
    dnsmasq = _need("dnsmasq")
    hosts = pasted[0] / "banner_add_hosts"
    # `dnsmasq --test` does not read hosts files: run it in the foreground for a second, in a
    # scratch network namespace (nothing leaves it), and read its log
    script = (f"ip link set lo up; {dnsmasq} -d -p 5300 --listen-address=127.0.0.1 "
              f"--bind-interfaces --no-resolv --no-hosts -C /dev/null --pid-file= "
              f"--log-facility=- --addn-hosts={hosts} & p=$!; sleep 1; kill $p; wait $p")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True,
                         timeout=20, check=False)
    log = out.stdout + out.stderr
    assert all(f"bad address at {hosts} line {n}" in log for n in range(1, 12)), log
    assert f"read {hosts} - 0 names" in log, log
