"""Timing profiles (`fixtures/profiles.toml`): a pure loader with `file: key: problem` errors.

Why a module of its own: the profile decides heartbeat's timers, DRBD's start-up waits and
dnsmasq's ping check, and every renderer and scenario must agree on one definition.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "profiles.toml"
HEARTBEAT_DEFAULT_KEEPALIVE_MS = 2000
# heartbeat and DRBD keep these in C ints: a larger value would wrap in the daemon
MAX_VALUE = 2**31 - 1


class ProfileError(ValueError):
    """A profile file that cannot be used; the message reads `file: key: problem`."""


@dataclass(frozen=True)
class Profile:
    """One timing profile. `keepalive_ms` is None when the profile keeps heartbeat's default."""

    name: str
    description: str
    keepalive_ms: int | None
    deadtime_ms: int
    warntime_ms: int
    initdead_ms: int
    wfc_timeout_s: int
    degr_wfc_timeout_s: int
    outdated_wfc_timeout_s: int
    ping_int_s: int | None
    no_ping: bool
    ipv6addr: str = "stock"
    ipaddr: str = "stock"
    optimistic_dad: bool = False

    @property
    def effective_keepalive_ms(self) -> int:
        """The keepalive heartbeat really uses (its default when the profile sets none)."""
        return self.keepalive_ms or HEARTBEAT_DEFAULT_KEEPALIVE_MS


_SECTIONS: dict[str, dict[str, type]] = {
    "heartbeat": {"keepalive_ms": int, "deadtime_ms": int, "warntime_ms": int, "initdead_ms": int},
    "drbd": {"wfc_timeout_s": int, "degr_wfc_timeout_s": int, "outdated_wfc_timeout_s": int,
             "ping_int_s": int},
    "dnsmasq": {"no_ping": bool},
    "agents": {"ipv6addr": str, "ipaddr": str},
    "clients": {"optimistic_dad": bool},
}
# which IPv6addr resource agent a profile runs (lab.services.agents): the package's, or the
# non-blocking comparison that does not hold the resource chain for DAD and advertisements
IPV6ADDR_AGENTS = ("stock", "nonblocking")
# which IPaddr: the package's, or the lean one that does its work from one shell and `ip`
IPADDR_AGENTS = ("stock", "lean")
# the values a text key may take
CHOICES: dict[str, tuple[str, ...]] = {"ipv6addr": IPV6ADDR_AGENTS, "ipaddr": IPADDR_AGENTS}


# keys a profile may leave out, and what they then are
OPTIONAL: dict[tuple[str, str], Any] = {("agents", "ipv6addr"): "stock",
                                        ("agents", "ipaddr"): "stock",
                                        ("clients", "optimistic_dad"): False}


def _field(src: str, table: dict[str, Any], section: str, key: str, kind: type) -> Any:
    where = f"{src}: {table['__name__']}.{section}.{key}"
    sect = table.get(section)
    if (not isinstance(sect, dict) or key not in sect) and (section, key) in OPTIONAL:
        return OPTIONAL[(section, key)]
    if not isinstance(sect, dict) or key not in sect:
        raise ProfileError(f"{where}: missing")
    value = sect[key]
    # bool is an int in Python: keep the two apart on purpose.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProfileError(f"{where}: expected an integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ProfileError(f"{where}: expected true or false, got {value!r}")
    if kind is str and value not in CHOICES[key]:
        raise ProfileError(f"{where}: expected one of {', '.join(CHOICES[key])}, got "
                           f"{value!r}")
    if kind is int and value < 0:
        raise ProfileError(f"{where}: must not be negative, got {value}")
    if kind is int and value > MAX_VALUE:
        raise ProfileError(f"{where}: must be at most {MAX_VALUE}, got {value}")
    return value


def _profile(src: str, name: str, raw: dict[str, Any]) -> Profile:
    table = dict(raw, __name__=name)
    for section, value in raw.items():
        if section == "description":
            continue
        if section not in _SECTIONS or not isinstance(value, dict):
            raise ProfileError(f"{src}: {name}.{section}: unknown key")
        for key in value:
            if key not in _SECTIONS[section]:
                raise ProfileError(f"{src}: {name}.{section}.{key}: unknown key")
    vals = {
        k: _field(src, table, s, k, t) for s, keys in _SECTIONS.items() for k, t in keys.items()
    }
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise ProfileError(f"{src}: {name}.description: expected a string")
    vals["keepalive_ms"] = vals["keepalive_ms"] or None
    vals["ping_int_s"] = vals["ping_int_s"] or None
    prof = Profile(name=name, description=desc, **vals)
    _check_timing(src, prof)
    return prof


def _check_timing(src: str, p: Profile) -> None:
    """heartbeat's own sanity rules (it warns or misbehaves otherwise), stated as errors."""
    hb = f"{src}: {p.name}.heartbeat"
    for key in ("deadtime_ms", "warntime_ms", "initdead_ms"):
        if getattr(p, key) <= 0:
            raise ProfileError(f"{hb}.{key}: must be positive")
    if p.effective_keepalive_ms >= p.deadtime_ms:
        raise ProfileError(f"{hb}.keepalive_ms: must be below deadtime_ms ({p.deadtime_ms})")
    if not p.effective_keepalive_ms < p.warntime_ms < p.deadtime_ms:
        raise ProfileError(
            f"{hb}.warntime_ms: must lie between keepalive ({p.effective_keepalive_ms}) "
            f"and deadtime ({p.deadtime_ms})"
        )
    if p.initdead_ms < p.deadtime_ms:
        raise ProfileError(f"{hb}.initdead_ms: must be at least deadtime_ms ({p.deadtime_ms})")


def parse_profiles(text: str, src: str = "profiles.toml") -> dict[str, Profile]:
    """Parse the TOML text of a profiles file; errors name the file and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{src}: (file): {exc}") from exc
    out: dict[str, Profile] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ProfileError(f"{src}: {name}: expected a table [{name}]")
        out[name] = _profile(src, name, table)
    if not out:
        raise ProfileError(f"{src}: (file): no profile defined")
    return out


def load_profiles(path: Path = DEFAULT_PATH) -> dict[str, Profile]:
    """Load every profile of a profiles file."""
    return parse_profiles(path.read_text(), str(path))


def load_profile(name: str, path: Path = DEFAULT_PATH) -> Profile:
    """Load one profile by name (`seed`, `fast`, ...)."""
    profiles = load_profiles(path)
    if name not in profiles:
        raise ProfileError(f"{path}: {name}: no such profile (have: {', '.join(sorted(profiles))})")
    return profiles[name]
