"""Parsers for the node logs that go on the timeline: heartbeat, its resource scripts, dnsmasq,
and the replicator's JSON events.

Formats, as heartbeat 3.0.6 / cluster-glue 1.0.12 and dnsmasq 2.90 really write them (checked
against their sources and the installed binaries, not guessed):

* cluster-glue ``cl_log`` to a ``logfile`` with ``syslogmsgfmt`` off (``print_logline``)::

      heartbeat[123]: 2026/11/26_06:30:01 info: Link lsvm1:enp2s1 dead.

* ``cl_log`` with ``syslogmsgfmt`` on (``append_log``, day zero-padded by ``%02d``)::

      Nov 26 06:30:01 lsvm2 heartbeat: [123]: info: Link lsvm1:enp2s1 dead.

* shell resource scripts (ResourceManager, IPaddr, ...) via ``ha_log`` in ocf-shellfuncs:
  ``echo `hadate`" $HA_LOGTAG:    msg"``; heartbeat exports ``HA_DATEFMT="%Y/%m/%d_%T\\t"``,
  the OCF default is ``"%b %d %T "`` (the word splitting of the backticks leaves two spaces)::

      2026/11/26_06:30:01  ResourceManager(default)[456]:    info: Running ... IPaddr ... start
      Nov 26 06:30:01  IPaddr(IPaddr_192.168.1.4)[789]:    INFO: Adding inet address ...

* dnsmasq with ``log-facility=FILE`` (``%.15s`` of ctime, day space-padded), optionally with a
  ``log-dhcp`` serial before the message, or through a syslog listener in the same shape::

      Nov 26 06:30:01 dnsmasq-dhcp[77]: DHCPACK(enp2s1) 192.168.1.50 aa:bb:cc:dd:ee:ff host1
      Nov  6 06:30:01 dnsmasq-dhcp[77]: 3795811090 DHCPACK(enp2s1) 192.168.1.50 aa:bb:...

* the replicator's events: one JSON object per line with ``t_mono`` (already monotonic).

Wall-clock stamps have whole seconds; the conversion to monotonic is done by :class:`ClockMap`
and the resulting :class:`LogEvent` keeps ``t_res_s=1.0`` to say the event happened during that
second. Syslog stamps have no year: the year that puts the line closest to the run is chosen.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Any

from lab.probes.clock import ClockMap
from lab.probes.records import DhcpEvent, LogEvent, RegistrarUpdate

_MONTHS = {m: i + 1 for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
)}

_HA_TS = r"(?P<ha>\d{4}/\d{2}/\d{2}_\d{2}:\d{2}:\d{2})"
_SYS_TS = r"(?P<sys>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2})"
_LEVEL = (r"(?:(?P<level>EMERG|ALERT|CRIT|ERROR|WARNING|WARN|notice|info|debug|INFO|DEBUG|ERR)"
          r":\s*)?")

# heartbeat[123]: 2026/11/26_06:30:01 info: msg
_CL_PLAIN = re.compile(rf"^(?P<proc>[\w.-]+)\[(?P<pid>\d+)\]: {_HA_TS} {_LEVEL}(?P<msg>.*)$")
# Nov 26 06:30:01 lsvm2 heartbeat: [123]: info: msg
_CL_SYSLOG = re.compile(
    rf"^{_SYS_TS} (?P<host>\S+) (?P<proc>[\w.-]+): \[(?P<pid>\d+)\]: {_LEVEL}(?P<msg>.*)$"
)
# 2026/11/26_06:30:01  ResourceManager(default)[456]:    info: msg   (and the syslog-date form)
_SHELL = re.compile(
    rf"^(?:{_HA_TS}|{_SYS_TS})\s+(?P<proc>[^\s(\[]+)(?:\((?P<inst>[^)]*)\))?\[(?P<pid>\d+)\]:"
    rf"\s+{_LEVEL}(?P<msg>.*)$"
)
# Nov 26 06:30:01 dnsmasq-dhcp[77]: [serial ]msg   (optionally "host " before the process)
_DNSMASQ = re.compile(
    rf"^{_SYS_TS} (?:(?P<host>\S+) )?(?P<proc>dnsmasq(?:-dhcp|-tftp|-script)?)\[(?P<pid>\d+)\]: "
    r"(?:(?P<serial>\d+) )?(?P<msg>.*)$"
)
_DHCP_MSG = re.compile(
    r"^(?P<type>DHCP[A-Z]+)\((?P<iface>[^)]*)\)"
    r"(?: (?P<ip>\d+\.\d+\.\d+\.\d+))?"
    r"(?: (?P<mac>[0-9a-f]{2}(?::[0-9a-f]{2}){5}))?"
    r"(?: (?P<rest>.*))?$"
)


def _wall_from_fields(
    fields: dict[str, int], tz: tzinfo | None
) -> float:
    naive = datetime(
        fields["year"], fields["month"], fields["day"],
        fields["hour"], fields["minute"], fields["second"],
    )
    if tz is None:
        # the daemons stamp local time; mktime applies this machine's zone rules (incl. DST)
        return time.mktime(naive.timetuple())
    return naive.replace(tzinfo=tz).timestamp()


def parse_ha_timestamp(text: str, tz: tzinfo | None = None) -> float:
    """``2026/11/26_06:30:01`` (cl_log's ha_timestamp, local time) → epoch seconds."""
    date, clock = text.split("_")
    y, mo, d = (int(x) for x in date.split("/"))
    h, mi, s = (int(x) for x in clock.split(":"))
    return _wall_from_fields(
        {"year": y, "month": mo, "day": d, "hour": h, "minute": mi, "second": s}, tz
    )


def parse_syslog_timestamp(text: str, ref_wall: float, tz: tzinfo | None = None) -> float:
    """``Nov 26 06:30:01`` / ``Nov  6 06:30:01`` → epoch seconds; the year is the one nearest
    ``ref_wall`` (syslog stamps have none)."""
    mon, day, clock = text.split()
    h, mi, s = (int(x) for x in clock.split(":"))
    ref_year = datetime.fromtimestamp(ref_wall).year
    best: float | None = None
    for year in (ref_year - 1, ref_year, ref_year + 1):
        try:
            cand = _wall_from_fields(
                {"year": year, "month": _MONTHS[mon], "day": int(day),
                 "hour": h, "minute": mi, "second": s},
                tz,
            )
        except ValueError:  # Feb 29 in a year without it
            continue
        if best is None or abs(cand - ref_wall) < abs(best - ref_wall):
            best = cand
    if best is None:
        raise ValueError(f"no year makes {text!r} a date")
    return best


def _stamp(m: re.Match[str], clock: ClockMap, tz: tzinfo | None) -> float:
    if m.groupdict().get("ha"):
        wall = parse_ha_timestamp(m.group("ha"), tz)
    else:
        wall = parse_syslog_timestamp(m.group("sys"), clock.start.wall, tz)
    return clock.to_mono(wall)


def parse_heartbeat_line(
    line: str, node: str, clock: ClockMap, tz: tzinfo | None = None
) -> LogEvent | None:
    """One ha-log line in any of heartbeat's formats, or None if it is not one."""
    line = line.rstrip("\n")
    for pattern in (_CL_PLAIN, _CL_SYSLOG, _SHELL):
        m = pattern.match(line)
        if m is None:
            continue
        # OCF agents log their full path: /usr/lib/ocf/resource.d//heartbeat/IPaddr
        proc = m.group("proc").rsplit("/", 1)[-1]
        source = "heartbeat" if proc in ("heartbeat", "ccm", "ipfail", "logd") else "resource"
        extra: dict[str, object] = {}
        inst = m.groupdict().get("inst")
        if inst:
            extra["instance"] = inst
        level = m.group("level")
        return LogEvent(
            t=_stamp(m, clock, tz),
            node=node,
            source=source,
            message=m.group("msg").strip(),
            level=level.lower() if level else None,
            process=proc,
            pid=int(m.group("pid")),
            t_res_s=1.0,
            fields=extra,
        )
    return None


def parse_dnsmasq_line(
    line: str, node: str, clock: ClockMap, tz: tzinfo | None = None
) -> LogEvent | None:
    """One dnsmasq log line; DHCP lines get ``fields`` type/iface/ip/mac/hostname."""
    m = _DNSMASQ.match(line.rstrip("\n"))
    if m is None:
        return None
    msg = m.group("msg")
    extra: dict[str, object] = {}
    d = _DHCP_MSG.match(msg)
    if d is not None:
        extra = {k: v for k, v in d.groupdict().items() if v is not None and k != "rest"}
        rest = d.group("rest")
        if rest:
            # after the MAC dnsmasq writes the client's hostname, or an explanation for NAKs
            if extra.get("type") == "DHCPNAK" or " " in rest:
                extra["reason"] = rest
            else:
                extra["hostname"] = rest
    if m.group("serial"):
        extra["serial"] = int(m.group("serial"))
    return LogEvent(
        t=_stamp(m, clock, tz),
        node=node,
        source="dnsmasq",
        message=msg,
        process=m.group("proc"),
        pid=int(m.group("pid")),
        t_res_s=1.0,
        fields=extra,
    )


def timed_json(line: str) -> dict[str, Any] | None:
    """One JSON object with a ``t_mono`` stamp, from a line of a JSON-lines log; None for any
    other line (a torn write, a banner)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and "t_mono" in data else None


def parse_replicator_line(line: str, node: str) -> LogEvent | None:
    """One replicator JSON event (``t_mono`` already monotonic); None for non-JSON lines."""
    data = timed_json(line)
    if data is None:
        return None
    t = float(data.pop("t_mono"))
    message = str(data.pop("event", data.pop("msg", data.pop("message", ""))))
    level = data.pop("level", None)
    return LogEvent(
        t=t,
        node=str(data.pop("node", node)),
        source="replicator",
        message=message,
        level=None if level is None else str(level),
        fields=data,
    )


DHCLIENT_REASONS = {
    "PREINIT": "start", "BOUND": "bound", "REBOOT": "bound", "RENEW": "renewed",
    "REBIND": "rebound", "EXPIRE": "expired", "FAIL": "timeout", "TIMEOUT": "timeout",
    "RELEASE": "released", "STOP": "stopped",
}


def parse_dhclient_event_line(line: str, node: str) -> DhcpEvent | None:
    """One event of the real client (isc dhclient), as its dhclient-script hook writes it:
    ``{"t_mono": .., "reason": "BOUND", "interface": "eth0", "mac": .., "ip": ..,
    "server_id": .., "lease_s": ..}``; mapped onto the fleet's :class:`DhcpEvent` so the real
    client and the simulated ones go through the same checks."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        return None
    event = DHCLIENT_REASONS.get(str(d.get("reason", "")))
    if event is None or "t_mono" not in d:
        return None
    lease = d.get("lease_s")
    return DhcpEvent(
        t=float(d["t_mono"]), client=str(d.get("mac") or f"{node}:{d.get('interface', '?')}"),
        event=event, state=str(d["reason"]), hostname=d.get("hostname") or node,
        address=d.get("ip") or None, server_id=d.get("server_id") or None,
        lease_s=int(lease) if lease not in (None, "") else None, probe=f"dhclient@{node}",
    )


def parse_registrar_line(line: str) -> RegistrarUpdate | None:
    """One dynamic-DNS update as the lab's registrar records it (one JSON object per line, its
    time on the host's CLOCK_MONOTONIC, which every node shares): which host, which address,
    whether the password was right, and which server's ddclient sent it."""
    d = timed_json(line)
    if d is None:
        return None
    host = ".".join(str(p) for p in (d.get("host"), d.get("domain")) if p)
    return RegistrarUpdate(t=float(d["t_mono"]), host=host, ip=str(d.get("ip") or ""),
                           ok=bool(d.get("accepted")), node=d.get("node") or None)


def parse_lines(
    lines: Iterable[str], node: str, source: str, clock: ClockMap, tz: tzinfo | None = None
) -> Iterator[LogEvent]:
    """Parse a whole log; ``source`` is heartbeat, dnsmasq or replicator. Unparsed lines are
    skipped (heartbeat writes multi-line dumps; they carry no time of their own)."""
    for line in lines:
        if source == "heartbeat":
            ev = parse_heartbeat_line(line, node, clock, tz)
        elif source == "dnsmasq":
            ev = parse_dnsmasq_line(line, node, clock, tz)
        elif source == "replicator":
            ev = parse_replicator_line(line, node)
        else:
            raise ValueError(f"unknown log source {source!r}")
        if ev is not None:
            yield ev
