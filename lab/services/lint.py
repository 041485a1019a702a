"""`lab lint [DIR]`: check a configuration set against the topology before anything starts.

Why: a typo in haresources or dnsmasq.conf shows up in a running pair as a silent non-takeover
or a client without DNS, minutes later. The lint reports every problem of the set in one run, as
`file:line: level: message` pointing at the source file in DIR, in three passes:

- the raw text as a reader pasted it: the page's typography (lab.services.typography), and every
  finding the renderer works around, found where the renderer finds it (a warning while the lab
  works around it, an error when `--keep-finding` keeps it);
- the set rendered exactly as the lab would (so it judges what nodes really get): heartbeat,
  DRBD and dnsmasq against the topology, secrets' modes, and the firewall against the daemons
  (lab.services.fwlint). A file the renderer cannot take is one error, stood in for, and the
  rest is still checked;
- one problem per defect: a check of the rendered set that trips over a line the raw pass
  already reported as an error (a kept finding, a typographic quote) is that error's
  consequence and is left out.

Levels: `error` — the lab refuses the set (`lab up`, exit 2); `warning` — worked around by the
lab, or harmless here (exit 0).
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.replicator import resfile
from lab.services import fwlint, haconf, typography
from lab.services.changes import Change
from lab.services.findings import BY_ID
from lab.services.firewall import (
    RULESET_PATH,
    UFW_SOURCE,
    UfwError,
    context,
    lab_rules,
    parse_ufw,
    serves_dhcpv6,
)
from lab.services.profiles import Profile, load_profile
from lab.services.render import (
    AUTHKEY_PLACEHOLDER,
    DDNS_PASSWORD_PLACEHOLDER,
    DRBD_SECRET_PLACEHOLDER,
    OPTIONAL_FILES,
    SEED_FILES,
    NodeConfig,
    RenderError,
    RenderOptions,
    Secrets,
    SeedConfig,
    render_pair,
)
from lab.topology import Topology

RESOURCE_DIRS = ("/etc/ha.d/resource.d", "/etc/init.d")
# Paths a node has that the lab provides (private persistent dirs and volatile ones).
LAB_PROVIDED = ("/etc/default/", "/var/lib/misc/", "/run/", "/tmp/")
# dnsmasq options whose value is a file or directory it reads or writes.
DNSMASQ_FILE_OPTIONS = frozenset({
    "addn-hosts", "dhcp-leasefile", "dhcp-hostsfile", "dhcp-optsfile", "hostsdir",
    "dhcp-hostsdir", "dhcp-optsdir", "conf-file", "conf-dir", "resolv-file", "servers-file",
    "dhcp-script", "read-ethers",
})
# Which source file a rendered node path comes from (for file:line in DIR).
SOURCE_OF = {
    "/etc/ha.d/ha.cf": "ha.cf",
    "/etc/ha.d/haresources": "haresources",
    "/etc/ha.d/authkeys": "authkeys",
    "/etc/drbd.d/drbd0.res": "drbd0.res",
    "/srv/drbd0/dnsmasq/dnsmasq.conf": "dnsmasq.conf",
    "/srv/drbd0/dnsmasq/banner_add_hosts": "banner_add_hosts",
    "/etc/default/dnsmasq": "default-dnsmasq",
    "/etc/ddclient.conf": "ddclient.conf",
    RULESET_PATH: UFW_SOURCE,
}
# Stand-ins for a file that is missing or that the renderer cannot take, so that the rest of the
# set is still checked (None: leave the file out; the set then has no firewall).
STAND_INS: dict[str, str | None] = {"default-dnsmasq": 'DNSMASQ_OPTS=""\n', UFW_SOURCE: None}
SECRET_FILES = {  # source file -> (placeholder, widest safe mode)
    "authkeys": (AUTHKEY_PLACEHOLDER, 0o600),
    "drbd0.res": (DRBD_SECRET_PLACEHOLDER, 0o640),
    "ddclient.conf": (DDNS_PASSWORD_PLACEHOLDER, 0o600),
}
LINT_SECRETS = Secrets("lint-authkey", "lint-drbd-secret", "lint-ddns-password")


@dataclass(frozen=True, order=True)
class Problem:
    """One lint finding; `str()` gives `file:line: level: message`."""

    file: str
    line: int
    level: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.message}"


class _Report:
    """Problems of one run; `raw` ones come from the text as written, the others from checks of
    the rendered set (left out where they only repeat a raw error, see `problems`)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.found: list[tuple[bool, Problem]] = []
        self.raw = False

    def add(self, source: str, line: int, level: str, message: str) -> None:
        self.found.append((self.raw, Problem(str(self.dir / source), line, level, message)))

    @property
    def problems(self) -> list[Problem]:
        """One problem per defect, sorted: raw problems, and derived ones on lines no raw error
        already explains."""
        explained = {(p.file, p.line) for raw, p in self.found if raw and p.level == "error"}
        return sorted({p for raw, p in self.found
                       if raw or (p.file, p.line) not in explained or p.line == 0})

    def error(self, source: str, line: int, message: str) -> None:
        self.add(source, line, "error", message)

    def warning(self, source: str, line: int, message: str) -> None:
        self.add(source, line, "warning", message)


# -- heartbeat ------------------------------------------------------------------------------------
def _resource_script(name: str, dirs: Sequence[str]) -> str | None:
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _check_ip_resource(rep: _Report, res: haconf.Resource, topo: Topology) -> None:
    arg = res.args[0] if res.args else ""
    if not arg:
        rep.error("haresources", res.line, f"{res.text}: no address given")
        return
    parts = arg.split("/")
    try:
        addr = ipaddress.ip_address(parts[0])
    except ValueError:
        rep.error("haresources", res.line, f"{res.text}: {parts[0]!r} is not an IP address")
        return
    vips = {v.address: v for v in topo.vips}
    vip = vips.get(addr)
    if vip is None:
        rep.error("haresources", res.line, f"{res.text}: {addr} is not a VIP of the topology "
                  f"({', '.join(str(v) for v in vips)})")
        return
    iface = parts[2] if len(parts) > 2 else None
    if iface is not None and iface != vip.interface:
        rep.error("haresources", res.line, f"{res.text}: the topology puts {addr} on "
                  f"{vip.interface}, not {iface}")
    if len(parts) > 1 and parts[1] and parts[1] != str(vip.prefixlen):
        rep.error("haresources", res.line, f"{res.text}: prefix /{parts[1]} differs from the "
                  f"topology's /{vip.prefixlen}")


def check_heartbeat(rep: _Report, cfg: NodeConfig, topo: Topology,
                    resource_dirs: Sequence[str]) -> tuple[str, ...]:
    """ha.cf and haresources; returns the mount points of Filesystem resources."""
    try:
        ha = haconf.parse_ha_cf(cfg.file("/etc/ha.d/ha.cf").content)
    except haconf.HaConfError as exc:
        rep.error("ha.cf", exc.line, exc.problem)
        return ()
    node_line = ha.values("node")[0].line if ha.values("node") else 1
    servers = {n.name for n in topo.nodes_with_role("server")}
    for name in ha.nodes:
        if name not in topo.nodes:
            rep.error("ha.cf", node_line, f"node {name}: no such node (hostname) in the topology")
        elif name not in servers:
            rep.error("ha.cf", node_line, f"node {name}: not a server in the topology")
    for d in ha.values("ucast"):
        if len(d.args) != 2:
            rep.error("ha.cf", d.line, "ucast wants: ucast IFACE ADDRESS")
            continue
        iface, addr = d.args
        owner = topo.owner_of(addr) if fwlint.is_ip(addr) else None
        if owner is None:
            rep.error("ha.cf", d.line, f"ucast {addr}: no node of the topology has this address")
        for n in ha.nodes:
            node = topo.nodes.get(n)
            if node is not None and iface not in {i.name for i in node.interfaces}:
                rep.error("ha.cf", d.line, f"ucast {iface}: {n} has no interface {iface}")
    dead, warn = ha.time_ms("deadtime", 30000.0), ha.time_ms("warntime")
    keep = ha.time_ms("keepalive", 2000.0)
    if dead is not None and keep is not None and keep >= dead:
        rep.error("ha.cf", 1, f"keepalive {keep:g}ms is not below deadtime {dead:g}ms")
    if warn is not None and dead is not None and warn >= dead:
        rep.error("ha.cf", 1, f"warntime {warn:g}ms is not below deadtime {dead:g}ms")

    try:
        groups = haconf.parse_haresources(cfg.file("/etc/ha.d/haresources").content)
    except haconf.HaConfError as exc:
        rep.error("haresources", exc.line, exc.problem)
        return ()
    mounts: list[str] = []
    for g in groups:
        if g.node not in ha.nodes:
            rep.error("haresources", g.line,
                      f"{g.node}: not a node of ha.cf ({' '.join(ha.nodes)})")
        for res in g.resources:
            if _resource_script(res.script, resource_dirs) is None:
                rep.error("haresources", res.line, f"resource {res.text}: no script "
                          f"{res.script!r} in {' or '.join(resource_dirs)}")
                continue
            if res.script in ("IPaddr", "IPaddr2", "IPv6addr"):
                _check_ip_resource(rep, res, topo)
            if res.script == "Filesystem" and len(res.args) >= 2:
                mounts.append(res.args[1])
    return tuple(mounts)


# -- DRBD -----------------------------------------------------------------------------------------
def check_drbd(rep: _Report, cfg: NodeConfig, topo: Topology, ha_nodes: Iterable[str]) -> None:
    """The .res matches the topology: its hosts are the HA nodes, at their own addresses."""
    text = cfg.file("/etc/drbd.d/drbd0.res").content
    try:
        resources = resfile.parse(text, "drbd0.res")
    except resfile.ResFileError as exc:
        rep.error("drbd0.res", exc.line, exc.problem)
        return
    lines = text.splitlines()

    def line_of(needle: str, after: str = "") -> int:
        start = next((i for i, ln in enumerate(lines) if after and after in ln), 0)
        for i in range(start, len(lines)):
            if needle in lines[i]:
                return i + 1
        return 1

    wanted = set(ha_nodes)
    for res in resources.values():
        if set(res.hosts) != wanted:
            rep.error("drbd0.res", res.line or 1, f"resource {res.name}: hosts "
                      f"{sorted(res.hosts)} differ from ha.cf's nodes {sorted(wanted)}")
        for host in res.hosts.values():
            where = line_of(f"address {host.address}", f"on {host.name}")
            node = topo.nodes.get(host.name)
            if node is None:
                rep.error("drbd0.res", line_of(f"on {host.name}"), f"on {host.name}: no such "
                          "node in the topology")
                continue
            owner = topo.owner_of(host.address) if fwlint.is_ip(host.address) else None
            if owner != host.name:
                rep.error("drbd0.res", where, f"on {host.name}: address {host.address} is not "
                          f"{host.name}'s address in the topology"
                          + (f" (it is {owner}'s)" if owner else ""))
            if not host.device.startswith("/dev/drbd"):
                rep.error("drbd0.res", line_of(f"device {host.device}", f"on {host.name}"),
                          f"on {host.name}: device {host.device} is not a /dev/drbdN")


# -- dnsmasq --------------------------------------------------------------------------------------
def dnsmasq_test(conf_text: str, extra_opts: Sequence[str] = ()) -> tuple[int, str]:
    """Run the real `dnsmasq --test` on the rendered configuration (in a temporary dir)."""
    with tempfile.TemporaryDirectory(prefix="hapair-lint-") as tmp:
        conf = Path(tmp) / "dnsmasq.conf"
        conf.write_text(conf_text)
        proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}", *extra_opts],
                              capture_output=True, text=True, timeout=30, check=False)
        return proc.returncode, (proc.stdout + proc.stderr).replace(str(conf), "dnsmasq.conf")


def _line_in_test_output(out: str) -> int:
    import re

    m = re.search(r"at line (\d+)", out)
    return int(m.group(1)) if m else 1


def check_dnsmasq(rep: _Report, cfg: NodeConfig, replicated: Sequence[str],
                  run_test: bool) -> None:
    """`dnsmasq --test`, and every file dnsmasq reads is on the replicated disk or lab-made."""
    conf = cfg.file("/srv/drbd0/dnsmasq/dnsmasq.conf").content
    opts_line = next((ln for ln in cfg.file("/etc/default/dnsmasq").content.splitlines()
                      if ln.startswith("DNSMASQ_OPTS=")), 'DNSMASQ_OPTS=""')
    opts = opts_line.split("=", 1)[1].strip('"').split()
    if run_test:
        extra = [o for o in opts if not o.startswith("--conf-file=")]
        rc, out = dnsmasq_test(conf, extra)
        if rc != 0:
            rep.error("dnsmasq.conf", _line_in_test_output(out), f"dnsmasq --test: {out.strip()}")
    roots = tuple(m.rstrip("/") + "/" for m in replicated)
    entries = [(no, ln.strip()) for no, ln in enumerate(conf.splitlines(), 1)]
    entries += [(0, o.lstrip("-")) for o in opts]
    for no, entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or key not in DNSMASQ_FILE_OPTIONS:
            continue
        path = value.split(",")[0]
        src = "dnsmasq.conf" if no else "default-dnsmasq"
        if path.startswith(roots):
            continue
        if path.startswith(LAB_PROVIDED) and not no:
            continue
        rep.error(src, no or 1, f"{key}={path}: not on the replicated disk "
                  f"({', '.join(replicated) or 'no Filesystem resource'}); the peer would not "
                  "have it after a failover")


# -- secrets --------------------------------------------------------------------------------------
def check_secrets(rep: _Report, directory: Path, configs: Iterable[NodeConfig]) -> None:
    """Rendered secrets carry safe modes; a real secret in DIR must not be world-readable."""
    for cfg in configs:
        for f in cfg.files:
            src = SOURCE_OF.get(f.path, "")
            if src in SECRET_FILES and f.mode & ~SECRET_FILES[src][1]:
                rep.error(src, 1, f"{f.path} would be mode {f.mode:o} (at most "
                          f"{SECRET_FILES[src][1]:o})")
    for src, (placeholder, widest) in SECRET_FILES.items():
        path = directory / src
        if not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if placeholder.encode() not in path.read_bytes() and mode & ~widest:
            rep.error(src, 1, f"holds a secret but is mode {mode:o} (at most {widest:o})")


# -- the raw text ---------------------------------------------------------------------------------
def check_typography(rep: _Report, texts: dict[str, str]) -> None:
    """The page's typography, in whichever file it appears (lab.services.typography)."""
    for name, text in sorted(texts.items()):
        for issue in typography.check(name, text):
            rep.add(name, issue.line, issue.level, issue.message)


# Where a finding lives in the raw text when its change is not a line of a source file.
FINDING_LINES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "F14": ("haresources", lambda ln: "IPv6addr::" in ln),
    "F22": ("dnsmasq.conf", serves_dhcpv6),
}


def _finding_lines(change: Change, texts: dict[str, str]) -> list[tuple[str, int]]:
    """The source lines a finding's change was made from."""
    source = SOURCE_OF.get(change.file, "")
    needle = change.seed_value.strip()
    lines = texts.get(source, "").splitlines() if source else []
    found = [(source, no) for no, ln in enumerate(lines, 1) if needle and needle in ln]
    if found:
        return found
    where = FINDING_LINES.get(change.finding)
    if where is None:
        return []
    name, match = where
    return [(name, no) for no, ln in enumerate(texts.get(name, "").splitlines(), 1)
            if match(ln.strip())]


def check_findings(rep: _Report, texts: dict[str, str], profile: Profile,
                   keep: frozenset[str]) -> None:
    """Every finding the renderer works around, on the raw text, kept or not: rendered once
    with every workaround on to learn where each one is made."""
    try:
        configs = render_pair(SeedConfig(texts), profile, LINT_SECRETS, RenderOptions())
    except RenderError:
        return  # reported by the render pass
    seen: set[tuple[str, int, str]] = set()
    for cfg in configs.values():
        for change in cfg.changes:
            finding = BY_ID.get(change.finding)
            if finding is None or not finding.fixed_by_lab:
                continue
            kept = finding.id in keep
            for source, line in _finding_lines(change, texts):
                if (source, line, finding.id) in seen:
                    continue
                seen.add((source, line, finding.id))
                then = (f"kept (--keep-finding {finding.id}): the lab runs it as printed" if kept
                        else f"the lab renders `{change.lab_value}` instead")
                why = change.why if f"({finding.id})" in change.why else \
                    f"{change.why} ({finding.id})"
                rep.add(source, line, "error" if kept else "warning", f"{why}; {then}")


# -- the firewall ---------------------------------------------------------------------------------
def check_firewall(rep: _Report, texts: dict[str, str], nodes: Iterable[str],
                   keep: frozenset[str]) -> None:
    """Each server's rules, as the lab loads them, against what its daemons need."""
    if UFW_SOURCE not in texts:
        return
    try:
        rules = parse_ufw(texts[UFW_SOURCE])
    except UfwError:
        return  # reported by the render pass
    for node in nodes:
        mine, _ = lab_rules(rules, context(texts, node), keep)
        for source, line, level, message in fwlint.check(texts, node, mine):
            rep.add(source, line, level, message)


# -- entry point ----------------------------------------------------------------------------------
def read_set(rep: _Report, directory: Path) -> dict[str, str]:
    """The set's files as text; a file that is not UTF-8 is one error at its first bad byte and
    is read with that byte replaced, so the rest of it is still checked."""
    texts: dict[str, str] = {}
    names = set(SEED_FILES) | set(OPTIONAL_FILES) | {p.name for p in directory.glob("interfaces.*")}
    for name in sorted(names):
        path = directory / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            texts[name] = data.decode()
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            rep.error(name, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
                      f"{column}): an editor or a paste mangled it")
            texts[name] = data.decode(errors="replace")
    return texts


def _render(rep: _Report, texts: dict[str, str], profile: Profile, options: RenderOptions
            ) -> dict[str, NodeConfig]:
    """Render the set; a file the renderer refuses is one error and a stand-in, then again."""
    for _ in range(len(STAND_INS) + 1):
        try:
            return render_pair(SeedConfig(texts), profile, LINT_SECRETS, options)
        except RenderError as exc:
            rep.error(exc.file, exc.line, f"cannot render: {exc.problem}")
            if exc.file not in STAND_INS:
                return {}
            stand_in = STAND_INS[exc.file]
            if stand_in is None:
                texts.pop(exc.file, None)
            else:
                texts[exc.file] = stand_in
    return {}


def lint(directory: Path, topology: Topology, profile: Profile | None = None,
         resource_dirs: Sequence[str] = RESOURCE_DIRS, run_dnsmasq: bool = True,
         options: RenderOptions | None = None) -> list[Problem]:
    """All problems of the configuration set in `directory` (fixture layout, see SEED_FILES),
    in one run."""
    rep = _Report(directory)
    opts = options or RenderOptions()
    prof = profile or load_profile("seed")
    rep.raw = True
    texts = read_set(rep, directory)
    rep.raw = False
    for name in SEED_FILES:
        if not name.startswith("interfaces.") and name not in texts:
            rep.error(name, 0, "missing")
            texts[name] = STAND_INS.get(name) or ""
    as_written = dict(texts)
    configs = _render(rep, texts, prof, opts)  # `texts` now holds stand-ins where needed
    rep.raw = True
    check_typography(rep, as_written)
    check_findings(rep, texts, prof, opts.keep_findings)
    rep.raw = False
    if not configs:
        if not list(_ha_nodes(texts.get("ha.cf", ""))):
            rep.error("ha.cf", 1, "no `node` line")
        return rep.problems
    cfg = next(iter(configs.values()))  # the shared files are the same on both nodes
    mounts = check_heartbeat(rep, cfg, topology, resource_dirs)
    check_drbd(rep, cfg, topology, configs)
    check_dnsmasq(rep, cfg, mounts, run_dnsmasq)
    check_secrets(rep, directory, configs.values())
    check_firewall(rep, texts, configs, opts.keep_findings)
    return rep.problems


def _ha_nodes(ha_cf: str) -> Iterable[str]:
    for line in ha_cf.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] == "node":
            yield from words[1:]


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.level == "error" for p in problems)
