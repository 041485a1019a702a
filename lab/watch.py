"""``lab watch``: a live view of what clients see, refreshed a few times a second.

Split in two so the picture is testable without a lab: :func:`state_from` turns records (DNS
samples, VIP holders, DRBD/heartbeat readings) into a :class:`WatchState` — pure — and
:func:`render` turns a state into a rich renderable — pure. The live loop in lab.probes.cli
only feeds them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lab.probes.records import DnsSample

NODE_STYLES = {"lsvm1": "bold blue", "lsvm2": "bold dark_orange"}


@dataclass(frozen=True)
class ServerView:
    server: str
    queries: int
    ok: int
    p50_ms: float | None
    p99_ms: float | None
    last_node: str | None
    nodes: Mapping[str, int]
    last_failure: str | None
    seconds_since_ok: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.queries == 0 else self.ok / self.queries


@dataclass(frozen=True)
class WatchState:
    lab: str
    now: float
    window_s: float
    servers: tuple[ServerView, ...] = ()
    vip_holders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    drbd: Mapping[str, str] = field(default_factory=dict)
    heartbeat: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = ()


def _quantile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p * len(values)) - 1))]


def server_views(samples: Iterable[DnsSample], now: float, window_s: float) -> tuple[
    ServerView, ...
]:
    """Per server: the last ``window_s`` seconds of queries (sent before ``now``)."""
    by: dict[str, list[DnsSample]] = {}
    last_ok: dict[str, float] = {}
    for s in samples:
        if s.t > now:
            continue
        if s.ok:
            last_ok[s.server] = max(last_ok.get(s.server, s.t), s.t)
        if s.t >= now - window_s:
            by.setdefault(s.server, []).append(s)
    views = []
    for server in sorted(set(by) | set(last_ok), key=lambda a: (":" in a, a)):
        ss = sorted(by.get(server, []), key=lambda s: s.t)
        ok = [s for s in ss if s.ok]
        lat = [s.latency_s * 1000 for s in ok if s.latency_s is not None]
        fails = [s for s in ss if not s.ok]
        views.append(ServerView(
            server=server, queries=len(ss), ok=len(ok), p50_ms=_quantile(lat, 0.5),
            p99_ms=_quantile(lat, 0.99), last_node=next((s.node for s in reversed(ok)), None),
            nodes=dict(Counter(s.node or "?" for s in ok)),
            last_failure=fails[-1].rcode if fails else None,
            seconds_since_ok=(now - last_ok[server]) if server in last_ok else None,
        ))
    return tuple(views)


def state_from(lab: str, samples: Iterable[DnsSample], now: float, window_s: float = 5.0,
               vip_holders: Mapping[str, tuple[str, ...]] | None = None,
               drbd: Mapping[str, str] | None = None, heartbeat: Mapping[str, str] | None = None,
               events: Iterable[str] = ()) -> WatchState:
    return WatchState(lab=lab, now=now, window_s=window_s,
                      servers=server_views(samples, now, window_s),
                      vip_holders=dict(vip_holders or {}), drbd=dict(drbd or {}),
                      heartbeat=dict(heartbeat or {}), events=tuple(events)[-5:])


def _node(name: str | None) -> Text:
    if name is None:
        return Text("—", style="dim")
    return Text(name, style=NODE_STYLES.get(name, "bold"))


def _rate(v: ServerView) -> Text:
    r = v.success_rate
    if r is None:
        return Text("no queries", style="dim")
    style = "green" if r >= 0.999 else ("yellow" if r >= 0.9 else "bold red")
    return Text(f"{100 * r:5.1f}% ({v.ok}/{v.queries})", style=style)


def render(state: WatchState) -> RenderableType:
    dns = Table(title=f"DNS as clients see it (last {state.window_s:g} s)", expand=True)
    dns.add_column("server", overflow="fold", min_width=11)  # an address is never ellipsized
    for col in ("success", "p50 ms", "p99 ms", "answered by", "last failure", "since last ok"):
        dns.add_column(col)
    for v in state.servers:
        who = Text(" ").join(_node(n) + Text(f" {c}") for n, c in sorted(v.nodes.items())) \
            if v.nodes else Text("nobody", style="bold red")
        since = "—" if v.seconds_since_ok is None else f"{v.seconds_since_ok:.1f} s"
        dns.add_row(v.server, _rate(v),
                    "—" if v.p50_ms is None else f"{v.p50_ms:.2f}",
                    "—" if v.p99_ms is None else f"{v.p99_ms:.2f}",
                    who, v.last_failure or "", since)
    vips = Table(title="VIP holders (from the servers' kernels)", expand=True)
    vips.add_column("VIP")
    vips.add_column("held by")
    for vip, holders in sorted(state.vip_holders.items(), key=lambda kv: (":" in kv[0], kv[0])):
        if not holders:
            cell = Text("nobody", style="bold red")
        elif len(holders) > 1:
            cell = Text("SPLIT BRAIN: " + ", ".join(holders), style="bold white on red")
        else:
            cell = _node(holders[0])
        vips.add_row(vip, cell)
    nodes = Table(title="servers", expand=True)
    nodes.add_column("node")
    nodes.add_column("DRBD")
    nodes.add_column("heartbeat view")
    for name in sorted(set(state.drbd) | set(state.heartbeat)):
        nodes.add_row(_node(name), state.drbd.get(name, "?"), state.heartbeat.get(name, "?"))
    parts: list[RenderableType] = [dns, vips, nodes]
    if state.events:
        parts.append(Text("recent: " + " · ".join(state.events), style="dim"))
    return Panel(Group(*parts), title=f"lab {state.lab}", subtitle="Ctrl-C to stop")
