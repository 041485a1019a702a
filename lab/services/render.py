"""Turn the seed's configuration files + a timing profile + lab secrets into each node's files.

Pure: text in, text out, plus the list of `Change`s made on the way. Why this shape: the seed's
files are the product's reference, so the lab never edits them by hand; every difference a lab
node runs with is made here, in one place, and reported, so the README's change table is the
truth by construction. A finding's workaround can be switched off (`keep_findings`) to show the
seed's own behaviour in a scenario.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.services.agents import (
    IPADDR_WRAPPER_PATH,
    IPV6ADDR_WRAPPER_PATH,
    render_ipaddr_lean,
    render_ipv6addr_nonblocking,
    render_ipv6addr_wrapper,
)
from lab.services.changes import Change, unique
from lab.services.firewall import RULESET_PATH, UFW_SOURCE, UfwError
from lab.services.firewall import render as render_firewall
from lab.services.profiles import Profile

SEED_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "seed"
SEED_FILES = (
    "interfaces.lsvm1",
    "interfaces.lsvm2",
    "drbd0.res",
    "dnsmasq.conf",
    "banner_add_hosts",
    "ddclient.conf",
    "authkeys",
    "ha.cf",
    "haresources",
    "default-dnsmasq",
    "default-ddclient",
)
# Files a set may lack: without `ufw` (the seed's `ufw allow` lines) a server has no firewall.
OPTIONAL_FILES = (UFW_SOURCE,)

# The ISP's IPv6 prefix in the seed and the documentation prefix the lab uses instead: the seed's
# /48 is kept apart from the /64s it holds (13c2 and 234c), host parts kept.
SEED_V6_PREFIX = "2601:40f:4100:"
LAB_V6_PREFIX = "2001:db8:4100:"
_SEED_V6_RE = re.compile(r"(?<![0-9A-Fa-f])2601:40f:4100:", re.IGNORECASE)

REPLICATED_MOUNT = "/srv/drbd0"
DNSMASQ_DIR = f"{REPLICATED_MOUNT}/dnsmasq"
HA_LOGFILE = "/var/log/ha-log"
LAB_CA_PATH = "/var/lib/misc/hapair-lab-ca.pem"
WHOAMI_NAME = "whoami.hapair.lab"

# Placeholders the seed prints instead of secrets.
AUTHKEY_PLACEHOLDER = "YOUR_KEY_HERE"
DRBD_SECRET_PLACEHOLDER = "SOME_PASSWORD_STRING"
DDNS_PASSWORD_PLACEHOLDER = "YOUR_PASSWORD_SUPPLIED_BY_NAMECHEAP"


class RenderError(ValueError):
    """The seed's files are not as the renderer expects (a placeholder or a line is missing).

    `file` names the set's file (`default-dnsmasq`, ...) and `line` its line (0: the whole
    file), so the lint can report it as one problem among others and go on."""

    def __init__(self, problem: str, file: str = "", line: int = 0) -> None:
        super().__init__(f"{file}:{line}: {problem}" if file else problem)
        self.problem, self.file, self.line = problem, file, line


@dataclass(frozen=True)
class Secrets:
    """Secrets made for one lab (see `lab.services.secrets.generate`); never logged."""

    authkey: str
    drbd_secret: str
    ddns_password: str


@dataclass(frozen=True)
class RenderOptions:
    """Lab-level choices that are not timing: which finding workarounds to leave out."""

    keep_findings: frozenset[str] = frozenset()
    ca_path: str = LAB_CA_PATH
    disk: str = "replicated"  # or "local": no replicated disk available (see render_haresources)
    # "stock" or "nonblocking" (lab.services.agents); None: the profile's agent
    ipv6addr: str | None = None
    # "stock" or "lean" (lab.services.agents); None: the profile's agent
    ipaddr: str | None = None


@dataclass(frozen=True)
class RenderedFile:
    """One file of a node, at its path inside the node."""

    path: str
    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class NodeConfig:
    """Everything rendered for one node, and what differs from the seed."""

    node: str
    files: tuple[RenderedFile, ...]
    changes: tuple[Change, ...]

    def file(self, path: str) -> RenderedFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.node}: no rendered file {path}")


@dataclass(frozen=True)
class SeedConfig:
    """The seed's files by fixture name (`ha.cf`, `dnsmasq.conf`, ...)."""

    texts: Mapping[str, str]
    source: str = str(SEED_DIR)

    def __getitem__(self, name: str) -> str:
        return self.texts[name]


def load_seed(directory: Path = SEED_DIR) -> SeedConfig:
    """Read the seed's fixture files (`interfaces.*` for any node name found, `ufw` if there)."""
    names = set(SEED_FILES) | set(OPTIONAL_FILES) | {
        p.name for p in directory.glob("interfaces.*")}
    return SeedConfig({n: (directory / n).read_text() for n in sorted(names)
                       if (directory / n).is_file()}, str(directory))


@dataclass
class _Out:
    """Accumulates one file's text and its changes while a renderer walks the seed's lines."""

    path: str
    lines: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    def change(self, key: str, seed: str, lab: str, why: str, finding: str = "") -> None:
        self.changes.append(Change(self.path, key, seed, lab, why, finding))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# -- helpers --------------------------------------------------------------------------------------
def lab_ipv6(text: str) -> str:
    """Replace the seed's ISP prefix with the documentation prefix, host parts kept."""
    return _SEED_V6_RE.sub(LAB_V6_PREFIX, text)


def full_ipv6(addr: str) -> str:
    """An IPv6 address without `::` (heartbeat splits resource arguments on `::`).

    Addresses already free of `::` are returned untouched, so the seed's spelling is kept.
    """
    if "::" not in addr:
        return addr
    return ":".join(f"{int(g, 16):x}" for g in ipaddress.IPv6Address(addr).exploded.split(":"))


def _ms(value: int) -> str:
    return f"{value}ms"


PREFIX_WHY = "the seed's ISP prefix is a real network; the lab uses the documentation prefix"


# -- heartbeat ------------------------------------------------------------------------------------
def render_ha_cf(seed: str, profile: Profile) -> tuple[str, list[Change]]:
    """ha.cf: the profile's timers, and a log file (a node has no syslog for heartbeat)."""
    out = _Out("/etc/ha.d/ha.cf")
    wanted = {
        "deadtime": _ms(profile.deadtime_ms),
        "initdead": _ms(profile.initdead_ms),
        "warntime": _ms(profile.warntime_ms),
    }
    if profile.keepalive_ms is not None:
        wanted["keepalive"] = _ms(profile.keepalive_ms)
    seen: set[str] = set()
    for line in seed.splitlines():
        words = line.split()
        if words and words[0] in wanted:
            key = words[0]
            seen.add(key)
            new = f"{key} {wanted[key]}"
            if line.strip() != new:
                out.change(key, line.strip(), new, f"timing profile `{profile.name}`")
            out.lines.append(new)
        else:
            out.lines.append(line)
    for key in wanted:
        if key not in seen:
            out.lines.append(f"{key} {wanted[key]}")
            out.change(key, "(not set: heartbeat default 2000ms)" if key == "keepalive"
                       else "(not set)", f"{key} {wanted[key]}", f"timing profile `{profile.name}`")
    for line, why in (
        ("logfacility none", "a node has no syslog daemon; heartbeat logs to its own file"),
        (f"logfile {HA_LOGFILE}", "heartbeat's log, read by the lab's timeline"),
    ):
        out.lines.append(line)
        out.change(line.split()[0], "(not set)", line, why)
    return out.text(), out.changes


def render_haresources(seed: str, keep: frozenset[str], disk: str = "replicated"
                       ) -> tuple[str, list[Change]]:
    """haresources: documentation prefix; the space after `IPv6addr::` removed (F3).

    With `disk="local"` the disk resources are left out, loudly: the lab then has no replicated
    disk and each node serves its own copy of /srv/drbd0.
    """
    out = _Out("/etc/ha.d/haresources")
    for number, line in enumerate(seed.splitlines(), 1):
        new = line
        if disk == "local" and new.strip().startswith(("drbddisk::", "Filesystem::")):
            out.change(new.split("::")[0], new.strip().rstrip(" \\"), "(left out)",
                       "no replicated disk in this lab (lab.replicator.service missing): "
                       "/srv/drbd0 is a plain directory on each node, leases are NOT replicated")
            continue
        if "F3" not in keep and re.search(r"::\s+\S", new):
            fixed = re.sub(r"::\s+", "::", new)
            out.change("IPv6addr", new.rstrip(" \\"), fixed.rstrip(" \\"),
                       "heartbeat splits haresources on blanks: `IPv6addr::` and the address "
                       "would become two resources", "F3")
            new = fixed
        mapped = lab_ipv6(new)
        if mapped != new:
            out.change("IPv6addr", new.strip().rstrip(" \\").strip(),
                       mapped.strip().rstrip(" \\").strip(), PREFIX_WHY)
            new = mapped
        for token in new.split():
            if token.startswith("IPv6addr::") and "::" in token[len("IPv6addr::"):]:
                arg = token[len("IPv6addr::"):]
                addr, _, rest = arg.partition("/")
                try:
                    full = f"IPv6addr::{full_ipv6(addr)}/{rest}"
                except ValueError as exc:
                    raise RenderError(f"{token}: {addr!r} is not an IPv6 address ({exc})",
                                      "haresources", number) from None
                out.change("IPv6addr", token, full, "heartbeat splits arguments on `::`: "
                           "IPv6 addresses must be written in full")
                new = new.replace(token, full)
        out.lines.append(new)
    return out.text(), out.changes


def render_authkeys(seed: str, secrets: Secrets) -> tuple[str, list[Change]]:
    """authkeys: the lab's own key instead of the placeholder."""
    out = _Out("/etc/ha.d/authkeys")
    out.lines = seed.replace(AUTHKEY_PLACEHOLDER, secrets.authkey).splitlines()
    if AUTHKEY_PLACEHOLDER not in seed:  # the set brings its own key: keep it
        return out.text(), out.changes
    out.change("3 md5", AUTHKEY_PLACEHOLDER, "(random per lab, mode 600)",
               "the seed prints a placeholder")
    return out.text(), out.changes


# -- DRBD -----------------------------------------------------------------------------------------
def render_drbd_res(seed: str, profile: Profile, secrets: Secrets) -> tuple[str, list[Change]]:
    """drbd0.res: the lab's shared secret and the profile's start-up timeouts."""
    out = _Out("/etc/drbd.d/drbd0.res")
    timeouts = {
        "wfc-timeout": profile.wfc_timeout_s,
        "degr-wfc-timeout": profile.degr_wfc_timeout_s,
        "outdated-wfc-timeout": profile.outdated_wfc_timeout_s,
    }
    for line in seed.splitlines():
        words = line.replace(";", " ").split()
        if words and words[0] in timeouts:
            new = f"{words[0]} {timeouts[words[0]]};"
            if new != line.strip():
                out.change(words[0], line.strip(), new, f"timing profile `{profile.name}`")
            out.lines.append(new)
        elif words[:1] == ["net"] and profile.ping_int_s is not None:
            out.lines += [line, f"ping-int {profile.ping_int_s};"]
            out.change("ping-int", "(not set: DRBD default 10 s)",
                       f"ping-int {profile.ping_int_s};",
                       f"timing profile `{profile.name}`: DRBD must notice a dead peer before "
                       "heartbeat's drbddisk stops retrying", "F12")
        elif DRBD_SECRET_PLACEHOLDER in line:
            out.lines.append(line.replace(DRBD_SECRET_PLACEHOLDER, secrets.drbd_secret))
            out.change("shared-secret", DRBD_SECRET_PLACEHOLDER, "(random per lab, mode 640)",
                       "the seed prints a placeholder")
        else:
            out.lines.append(line)
    return out.text(), out.changes


# -- dnsmasq --------------------------------------------------------------------------------------
def render_dnsmasq_conf(seed: str, profile: Profile, keep: frozenset[str]
                        ) -> tuple[str, list[Change]]:
    """dnsmasq.conf (on the replicated disk): prefix, addn-hosts path (F1), tags (F2), no-ping."""
    out = _Out(f"{DNSMASQ_DIR}/dnsmasq.conf")
    for line in seed.splitlines():
        new = line
        if new.startswith("addn-hosts=/media/") and "F1" not in keep:
            fixed = "addn-hosts=" + REPLICATED_MOUNT + new[len("addn-hosts=/media/drbd0"):]
            out.change("addn-hosts", new, fixed, "the file lives on the replicated disk, "
                       "mounted at /srv/drbd0; /media/drbd0 does not exist", "F1")
            new = fixed
        if re.match(r"dhcp-option=tag:\s+", new) and "F2" not in keep:
            fixed = re.sub(r"^dhcp-option=tag:\s+", "dhcp-option=tag:", new)
            out.change("dhcp-option", new, fixed, "with the space the tag never matches and "
                       "clients get the node's own address as router and DNS server", "F2")
            new = fixed
        mapped = lab_ipv6(new)
        if mapped != new:
            out.change(new.split("=", 1)[0], new, mapped, PREFIX_WHY)
            new = mapped
        out.lines.append(new)
    if profile.no_ping:
        out.lines += ["", "# hapair-lab: profile " + profile.name, "no-ping"]
        out.change("no-ping", "(not set: ICMP check before each new lease)", "no-ping",
                   f"profile `{profile.name}`: the ~3 s ping check delays every new client "
                   "and stalls TCP DNS meanwhile")
    return out.text(), out.changes


def render_banner_add_hosts(seed: str) -> tuple[str, list[Change]]:
    """banner_add_hosts (on the replicated disk): documentation prefix."""
    out = _Out(f"{DNSMASQ_DIR}/banner_add_hosts")
    for line in seed.splitlines():
        mapped = lab_ipv6(line)
        if mapped != line:
            out.change(line.split()[-1], line.split()[0], mapped.split()[0], PREFIX_WHY)
        out.lines.append(mapped)
    return out.text(), out.changes


def render_default_dnsmasq(seed: str, node: str) -> tuple[str, list[Change]]:
    """/etc/default/dnsmasq: the seed's lines plus a per-node TXT record naming the answerer.

    Why the TXT record lives here and not in dnsmasq.conf: dnsmasq.conf is on the replicated
    disk, shared by both nodes; this file is per node, so `whoami.hapair.lab` tells a probe which
    node answered whatever the replicated config says.
    """
    out = _Out("/etc/default/dnsmasq")
    found = False
    for line in seed.splitlines():
        m = re.match(r'^DNSMASQ_OPTS="(.*)"$', line)
        if m:
            found = True
            opts = f"{m.group(1)} --txt-record={WHOAMI_NAME},{node}"
            out.lines.append(f'DNSMASQ_OPTS="{opts}"')
            out.change("DNSMASQ_OPTS", f"{m.group(1)}",
                       f"{m.group(1)} --txt-record={WHOAMI_NAME},<node>",
                       "a per-node answer (TXT whoami.hapair.lab) tells probes which node served")
        else:
            out.lines.append(line)
    if not found:
        where = next((no for no, text in enumerate(seed.splitlines(), 1)
                      if text.lstrip().startswith("DNSMASQ_OPTS")), 0)
        raise RenderError('no DNSMASQ_OPTS="..." line (a double-quoted value on one line)',
                          "default-dnsmasq", where)
    return out.text(), out.changes


# -- ddclient -------------------------------------------------------------------------------------
def render_ddclient_conf(seed: str, secrets: Secrets, ca_path: str) -> tuple[str, list[Change]]:
    """ddclient.conf: the lab password and the lab CA (ddclient 3.10 uses https for namecheap)."""
    out = _Out("/etc/ddclient.conf")
    for line in seed.splitlines():
        if line.startswith("password="):
            out.lines.append(f"ssl_ca_file={ca_path}")
            out.change("ssl_ca_file", "(not set: system CAs)", f"ssl_ca_file={ca_path}",
                       "ddclient 3.10 always uses https for namecheap; the lab registrar's "
                       "certificate is signed by a CA made per lab")
            out.lines.append(line.replace(DDNS_PASSWORD_PLACEHOLDER, secrets.ddns_password))
            if DDNS_PASSWORD_PLACEHOLDER in line:
                    out.change("password", DDNS_PASSWORD_PLACEHOLDER,
                           "(random per lab, mode 600)", "the seed prints a placeholder")
        else:
            out.lines.append(line)
    return out.text(), out.changes


def render_default_ddclient(seed: str) -> tuple[str, list[Change]]:
    """/etc/default/ddclient: the seed's lines as they are (the init script's default interval)."""
    return seed, []


# -- reference files ------------------------------------------------------------------------------
def render_resolv_conf(interfaces: str) -> str:
    """/etc/resolv.conf as ifupdown + resolvconf would write it from `dns-nameservers`."""
    servers: list[str] = []
    for line in interfaces.splitlines():
        words = line.split()
        if words and words[0] == "dns-nameservers":
            servers += [w for w in words[1:] if w not in servers]
    return "".join(f"nameserver {s}\n" for s in servers)


def ha_nodes(ha_cf: str) -> tuple[str, ...]:
    """The node names of ha.cf's `node` lines, in order."""
    names: list[str] = []
    for line in ha_cf.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] == "node":
            names += words[1:]
    return tuple(names)


def render_node(seed: SeedConfig, profile: Profile, secrets: Secrets, node: str,
                options: RenderOptions | None = None) -> NodeConfig:
    """All files of one HA node (lsvm1 or lsvm2), with the changes from the seed."""
    opts = options or RenderOptions()
    keep = opts.keep_findings
    files: list[RenderedFile] = []
    changes: list[Change] = []

    def add(path: str, rendered: tuple[str, list[Change]], mode: int = 0o644,
            group: str = "root") -> None:
        files.append(RenderedFile(path, rendered[0], mode, group=group))
        changes.extend(rendered[1])

    add("/etc/ha.d/ha.cf", render_ha_cf(seed["ha.cf"], profile))
    add("/etc/ha.d/haresources", render_haresources(seed["haresources"], keep, opts.disk))
    add("/etc/ha.d/authkeys", render_authkeys(seed["authkeys"], secrets), 0o600)
    agent = opts.ipv6addr or profile.ipv6addr
    wrapper = (render_ipv6addr_nonblocking() if agent == "nonblocking"
               else render_ipv6addr_wrapper(keep))
    if wrapper is not None:
        add(IPV6ADDR_WRAPPER_PATH, wrapper, 0o755)
    if (opts.ipaddr or profile.ipaddr) == "lean":  # else the package's, copied with /etc/ha.d
        add(IPADDR_WRAPPER_PATH, render_ipaddr_lean(), 0o755)
    add("/etc/drbd.d/drbd0.res", render_drbd_res(seed["drbd0.res"], profile, secrets), 0o640)
    add("/etc/default/dnsmasq", render_default_dnsmasq(seed["default-dnsmasq"], node))
    add("/etc/default/ddclient", render_default_ddclient(seed["default-ddclient"]))
    add("/etc/ddclient.conf",
        render_ddclient_conf(seed["ddclient.conf"], secrets, opts.ca_path), 0o600)
    add(f"{DNSMASQ_DIR}/dnsmasq.conf", render_dnsmasq_conf(seed["dnsmasq.conf"], profile, keep))
    add(f"{DNSMASQ_DIR}/banner_add_hosts", render_banner_add_hosts(seed["banner_add_hosts"]))
    try:
        firewall = render_firewall(seed.texts, node, keep)
    except UfwError as exc:
        raise RenderError(exc.problem, exc.file, exc.line) from None
    if firewall is not None:
        add(RULESET_PATH, firewall, 0o600)
    interfaces = seed.texts.get(f"interfaces.{node}")
    if interfaces is not None:  # reference only; a set for other hostnames may lack it
        files.append(RenderedFile("/etc/network/interfaces", interfaces))
        files.append(RenderedFile("/etc/resolv.conf", render_resolv_conf(interfaces)))
    return NodeConfig(node, tuple(files), tuple(unique(changes)))


def render_pair(seed: SeedConfig, profile: Profile, secrets: Secrets,
                options: RenderOptions | None = None) -> dict[str, NodeConfig]:
    """Both HA nodes named in ha.cf's `node` line."""
    return {n: render_node(seed, profile, secrets, n, options) for n in ha_nodes(seed["ha.cf"])}


# the sysctls a profile with optimistic DAD sets on each client interface (lab.services.stack)
OPTIMISTIC_DAD_SYSCTLS = ("optimistic_dad", "use_optimistic")


def client_changes(profile: Profile) -> list[Change]:
    """What a profile changes on the lab's client nodes. The seed has no clients; they behave
    as a stock Linux host unless the profile says otherwise."""
    if not profile.optimistic_dad:
        return []
    return [Change(
        "client nodes: /proc/sys/net/ipv6/conf/<interface>", ", ".join(OPTIMISTIC_DAD_SYSCTLS),
        "(no clients in the seed; Linux's default 0)", "1",
        f"profile `{profile.name}`: a client sends from its SLAAC address while duplicate "
        "address detection runs (RFC 4429) instead of 1-2 s after the router advertisement, at "
        "a cold start and after each link flap; a duplicate address would then be found only "
        "after the first packets")]


def all_changes(configs: Mapping[str, NodeConfig], profile: Profile | None = None
                ) -> list[Change]:
    """The changes of every node, once each (the README table's rows); with `profile`, also
    what it changes on the clients."""
    clients = client_changes(profile) if profile is not None else []
    return unique([*(c for cfg in configs.values() for c in cfg.changes), *clients])
