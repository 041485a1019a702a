"""The renderer: faithful where it can be, every difference reported as a Change."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lab.services.agents import IPV6ADDR_WRAPPER_PATH, OCF_IPV6ADDR
from lab.services.changes import markdown_table
from lab.services.findings import BY_ID, FINDINGS, markdown_list
from lab.services.haconf import parse_ha_cf, parse_haresources
from lab.services.profiles import load_profile
from lab.services.render import (
    NodeConfig,
    RenderOptions,
    Secrets,
    all_changes,
    full_ipv6,
    lab_ipv6,
    load_seed,
    render_pair,
)

SECRETS = Secrets("AUTHKEY-x", "DRBD-x", "DDNS-x")


def pair(profile: str = "seed", keep: frozenset[str] = frozenset()) -> dict[str, NodeConfig]:
    return render_pair(load_seed(), load_profile(profile), SECRETS, RenderOptions(keep))


def test_both_nodes_get_every_file() -> None:
    configs = pair()
    assert set(configs) == {"lsvm1", "lsvm2"}
    paths = {f.path for f in configs["lsvm1"].files}
    assert {"/etc/ha.d/ha.cf", "/etc/ha.d/haresources", "/etc/ha.d/authkeys",
            "/etc/drbd.d/drbd0.res", "/etc/default/dnsmasq", "/etc/default/ddclient",
            "/etc/ddclient.conf", "/srv/drbd0/dnsmasq/dnsmasq.conf",
            "/srv/drbd0/dnsmasq/banner_add_hosts", "/etc/network/interfaces"} <= paths


def test_no_isp_prefix_survives_and_host_parts_are_kept() -> None:
    for cfg in pair().values():
        for f in cfg.files:
            if f.path != "/etc/network/interfaces":
                assert "2601:" not in f.content, f.path
    hosts = pair()["lsvm1"].file("/srv/drbd0/dnsmasq/banner_add_hosts").content
    assert "2001:db8:4100:234c:5054:ff:fe63:1e59    lsvm2" in hosts
    mapped = lab_ipv6("x=[2601:40f:4100:13c2:0:ffff:c0a8:104]")
    assert mapped == "x=[2001:db8:4100:13c2:0:ffff:c0a8:104]"


def test_secrets_substituted_with_safe_modes_and_never_in_changes() -> None:
    cfg = pair()["lsvm2"]
    modes = {f.path: f.mode for f in cfg.files}
    assert modes["/etc/ha.d/authkeys"] == 0o600
    assert modes["/etc/drbd.d/drbd0.res"] == 0o640
    assert modes["/etc/ddclient.conf"] == 0o600
    assert "3 md5 AUTHKEY-x" in cfg.file("/etc/ha.d/authkeys").content
    assert 'shared-secret "DRBD-x";' in cfg.file("/etc/drbd.d/drbd0.res").content
    assert "password='DDNS-x'" in cfg.file("/etc/ddclient.conf").content
    table = markdown_table(cfg.changes)
    for secret in (SECRETS.authkey, SECRETS.drbd_secret, SECRETS.ddns_password):
        assert secret not in table


def test_seed_profile_keeps_the_seed_timing() -> None:
    ha = parse_ha_cf(pair("seed")["lsvm1"].file("/etc/ha.d/ha.cf").content)
    assert ha.time_ms("deadtime") == 10000 and ha.time_ms("initdead") == 20000
    assert ha.values("keepalive") == []
    assert not [c for c in pair("seed")["lsvm1"].changes if "timing" in c.why]


def test_fast_profile_changes_timing_visibly() -> None:
    cfg = pair("fast")["lsvm1"]
    ha = parse_ha_cf(cfg.file("/etc/ha.d/ha.cf").content)
    assert ha.time_ms("keepalive") == 250 and ha.time_ms("deadtime") == 1500
    keys = {c.key for c in cfg.changes if "fast" in c.why}
    assert {"deadtime", "initdead", "warntime", "keepalive", "no-ping", "ping-int"} <= keys
    assert "net {\nping-int 1;\n" in cfg.file("/etc/drbd.d/drbd0.res").content


def test_haresources_arguments_split_like_heartbeat() -> None:
    (group,) = parse_haresources(pair()["lsvm1"].file("/etc/ha.d/haresources").content)
    assert group.node == "lsvm2"
    scripts = [r.script for r in group.resources]
    assert scripts == ["drbddisk", "Filesystem", "IPaddr", "IPaddr", "IPv6addr", "IPv6addr",
                       "dnsmasq", "ddclient"]
    v6 = [r.args for r in group.resources if r.script == "IPv6addr"]
    assert v6 == [("2001:db8:4100:13c2:0:ffff:c0a8:0104/64/enp2s1",),
                  ("2001:db8:4100:13c2:0:ffff:c0a8:0304/64/enp2s1.3",)]


def test_keep_finding_reproduces_the_seed_as_printed() -> None:
    cfg = pair(keep=frozenset({"F1", "F2", "F3", "F14", "F20", "F22"}))["lsvm1"]
    conf = cfg.file("/srv/drbd0/dnsmasq/dnsmasq.conf").content
    assert "addn-hosts=/media/drbd0/dnsmasq/banner_add_hosts" in conf
    assert "dhcp-option=tag: enp2s1,option:router" in conf
    assert "IPv6addr:: 2001:db8" in cfg.file("/etc/ha.d/haresources").content
    assert not [c for c in cfg.changes if c.finding]
    # F14 kept: the package's wrapper (copied from the host with /etc/ha.d) stays in place
    assert IPV6ADDR_WRAPPER_PATH not in {f.path for f in cfg.files}


def test_ipv6addr_wrapper_answers_status_with_the_agents_status() -> None:
    wrapper = pair()["lsvm2"].file(IPV6ADDR_WRAPPER_PATH)
    assert wrapper.mode == 0o755
    text = wrapper.content
    assert text.startswith("#!/bin/sh\n")
    status_branch = text[text.index('if [ "$2" = status ]'):text.index("ra_execocf $2")]
    assert "/usr/lib/ocf/resource.d/heartbeat/IPv6addr status" in status_branch
    assert "monitor" not in status_branch
    assert text.rstrip().endswith("ra_execocf $2")  # every other action: heartbeat's own path


def test_each_fix_names_its_finding_and_per_node_identity_differs() -> None:
    configs = pair()
    fixed = {c.finding for c in all_changes(configs) if c.finding}
    assert fixed == {f.id for f in FINDINGS if f.fixed_by_lab}
    for node, cfg in configs.items():
        assert f"--txt-record=whoami.hapair.lab,{node}" in cfg.file("/etc/default/dnsmasq").content
    conf = configs["lsvm1"].file("/srv/drbd0/dnsmasq/dnsmasq.conf").content
    assert not re.search(r"tag:\s", conf)
    assert "addn-hosts=/srv/drbd0/dnsmasq/banner_add_hosts" in conf


def test_optimistic_dad_on_the_clients_is_a_change_of_the_fast_profile_only() -> None:
    fast = [c for c in all_changes(pair("fast"), load_profile("fast"))
            if c.file.startswith("client nodes:")]
    assert [(c.key, c.lab_value) for c in fast] == [("optimistic_dad, use_optimistic", "1")]
    assert "profile `fast`" in fast[0].why
    seed = all_changes(pair("seed"), load_profile("seed"))
    assert not [c for c in seed if c.file.startswith("client nodes:")]
    assert seed == all_changes(pair("seed"))


def test_tables_render_as_markdown() -> None:
    table = markdown_table(all_changes(pair("fast")))
    assert table.startswith("| file | setting | seed | lab | why |")
    assert "(F1)" in table and "`keepalive 250ms`" in table
    assert all(f"**{fid} —" in markdown_list() for fid in BY_ID)


@pytest.mark.parametrize(("short", "full"), [
    ("2001:db8::1", "2001:db8:0:0:0:0:0:1"),
    ("2001:db8:4100:13c2:0:ffff:c0a8:0104", "2001:db8:4100:13c2:0:ffff:c0a8:0104"),
])
def test_full_ipv6_has_no_double_colon(short: str, full: str) -> None:
    assert full_ipv6(short) == full


@pytest.mark.parametrize(("arg", "action", "expect"), [
    ("2001:db8::4/64/enp2s1.3", "status", "status 2001:db8::4 64 enp2s1.3 rc=7"),
    ("2001:db8::4/64", "status", "status 2001:db8::4 64 - rc=7"),
    ("2001:db8::4/64/enp2s1", "start", "execocf start 2001:db8::4 64 enp2s1"),
])
def test_ipv6addr_wrapper_splits_haresources_arguments(
        tmp_path: Path, arg: str, action: str, expect: str) -> None:
    """The wrapper run by sh with heartbeat's library and the OCF agent replaced by stubs that
    print what they were given."""
    stubs = tmp_path / "hto-mapfuncs"
    stubs.write_text(
        'LEGAL_ACTIONS="(start|stop|status)"\n'
        'log_and_print() { :; }\n'
        'ra_execocf() { echo "execocf $1 $OCF_RESKEY_ipv6addr $OCF_RESKEY_cidr_netmask '
        '${OCF_RESKEY_nic:--}"; }\n')
    agent = tmp_path / "agent"
    agent.write_text('#!/bin/sh\necho "$1 $OCF_RESKEY_ipv6addr $OCF_RESKEY_cidr_netmask '
                     '${OCF_RESKEY_nic:--}"\nexit 7\n')
    agent.chmod(0o755)
    text = (pair()["lsvm1"].file(IPV6ADDR_WRAPPER_PATH).content
            .replace("/etc/ha.d/resource.d//hto-mapfuncs", str(stubs))
            .replace(OCF_IPV6ADDR, str(agent)))
    script = tmp_path / "IPv6addr"
    script.write_text(text)
    done = subprocess.run(["sh", str(script), arg, action], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    out = done.stdout.strip() + (f" rc={done.returncode}" if action == "status" else "")
    assert out == expect, done.stderr


def test_nonblocking_ipv6addr_is_a_visible_change_never_the_seeds() -> None:
    stock = pair()["lsvm1"].file(IPV6ADDR_WRAPPER_PATH).content
    assert OCF_IPV6ADDR in stock  # the package's agent does the work in profile seed
    configs = render_pair(load_seed(), load_profile("fast"), SECRETS,
                          RenderOptions(ipv6addr="nonblocking"))
    wrapper = configs["lsvm1"].file(IPV6ADDR_WRAPPER_PATH)
    assert "nodad" in wrapper.content and "send_ua" in wrapper.content
    assert wrapper.mode == 0o755
    rows = [c for c in all_changes(configs) if c.file == IPV6ADDR_WRAPPER_PATH]
    assert [c.key for c in rows] == ["start"] and "gives up DAD" in rows[0].why
    assert subprocess.run(["sh", "-n"], input=wrapper.content, text=True).returncode == 0


def test_readme_findings_are_the_findings_list() -> None:
    """README's findings section is `lab findings`, word for word (one source of truth)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("- **F1 —")
    end = readme.index("\n## ", start)
    assert readme[start:end].strip() == markdown_list().strip()


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/etc/ha.d/resource.d/hto-mapfuncs").exists(),
                    reason="needs root (a private network namespace) and heartbeat's "
                           "hto-mapfuncs")
def test_nonblocking_ipv6addr_start_status_stop_with_haresources_spelling(
        tmp_path: Path) -> None:
    """Run the rendered agent for real in a throwaway network namespace, with the address
    spelled as haresources spells it (zero-padded groups) while the kernel prints it
    compressed: start adds it once, status sees it, stop removes it."""
    configs = render_pair(load_seed(), load_profile("fast"), SECRETS, RenderOptions())
    agent = tmp_path / "IPv6addr"
    agent.write_text(configs["lsvm1"].file(IPV6ADDR_WRAPPER_PATH).content)
    arg = "2001:db8:4100:13c2:0:ffff:c0a8:0304/64/enp2s1.3"
    script = f"""
        ip link add enp2s1.3 type veth peer name peer0 && ip link set enp2s1.3 up || exit 9
        ip link set peer0 up
        sh {agent} {arg} status; echo "before=$?"
        sh {agent} {arg} start; echo "start=$?"
        sh {agent} {arg} start; echo "again=$?"
        sh {agent} {arg} status; echo "running=$?"
        ip -6 -o addr show dev enp2s1.3 | grep -c c0a8:304
        sh {agent} {arg} stop; echo "stop=$?"
        sh {agent} {arg} status; echo "after=$?"
        ip -6 -o addr show dev enp2s1.3 | grep -c c0a8:304
    """
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True,
                         text=True, timeout=60).stdout
    lines = [ln for ln in out.splitlines() if "=" in ln or ln.isdigit()]
    assert lines == ["before=3", "start=0", "again=0", "running=0", "1", "stop=0",
                     "after=3", "0"], out
