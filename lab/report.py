"""Artifacts of a run: ``metrics.json``, ``timeline.jsonl``, JUnit properties and
``timeline.png`` — a picture meant to be understood in five seconds.

The plot, top to bottom, on one time axis (seconds since the run started):
* one row per DNS server address: every query a dot at its latency (log scale), coloured by
  the node that answered; failed queries as red marks in a band above, so an outage is a red
  stripe and a takeover is the point where the dot colour changes; a ▼ in a node's colour marks
  the moment the client's ARP/ND entry for that address moved to that node;
* the VIP holder band (who held each VIP, hatched red when two did), when the lab recorded it;
* DHCP: one row per client, ACKs as dots, NAKs/timeouts in red, requests as small ticks;
* fault windows shaded grey over every row, labelled; takeover marked with a dashed line.
Matplotlib's Agg backend only: no display needed, same pixels on every machine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from lab import checks
from lab.probes.records import DhcpEvent, DnsSample, FaultEvent, LogEvent, VipEvent
from lab.timeline import Timeline

NODE_COLOURS = {"lsvm1": "#1f77b4", "lsvm2": "#ff7f0e"}
EXTRA_COLOURS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
UNKNOWN = "#7f7f7f"
FAIL = "#d62728"
SELF_COLOUR = "#9467bd"  # windows of what the design did to itself (a handler's reboot -f)
MAX_DHCP_ROWS = 60


def node_colour(node: str | None, known: dict[str, str]) -> str:
    if node is None:
        return UNKNOWN
    if node not in known:
        known[node] = NODE_COLOURS.get(node) or EXTRA_COLOURS[len(known) % len(EXTRA_COLOURS)]
    return known[node]


# -- metrics.json, JUnit ------------------------------------------------------------------
def write_metrics(path: Path, metrics: checks.Metrics, **extra: Any) -> None:
    data = {**metrics.to_dict(), **extra}
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def junit_properties(metrics: checks.Metrics) -> list[tuple[str, str]]:
    """The scalar metrics as (name, value) pairs for JUnit XML ``<property>`` elements; nested
    dicts become dotted names, lists are left to metrics.json."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            return
        elif value is None:
            out.append((prefix, "none"))
        elif isinstance(value, float):
            out.append((prefix, f"{value:.6g}"))
        else:
            out.append((prefix, str(value)))

    walk("", {k: v for k, v in metrics.to_dict().items() if k != "lease_survival_detail"})
    return out


def record_properties(record_property: Callable[[str, object], None],
                      metrics: checks.Metrics) -> None:
    """Feed pytest's ``record_property`` fixture (it lands in ``--junitxml`` output)."""
    for name, value in junit_properties(metrics):
        record_property(f"hapair.{name}", value)


# -- the picture --------------------------------------------------------------------------
def _panels(samples: Iterable[DnsSample]) -> list[str]:
    """One DNS panel per VIP asked directly, then one per client's own resolver path (what its
    OS learned by DHCP/RA), so a path that fails by design (the guests' router, F6) never
    blurs the VIP figures: ``vip|SERVER`` or ``os|PROBE|SERVER``."""
    vip: dict[str, None] = {}
    os_paths: dict[str, None] = {}
    for s in samples:
        if s.mode == "os":
            os_paths.setdefault(f"os|{s.probe}|{s.server}", None)
        else:
            vip.setdefault(f"vip|{s.server}", None)
    return [*sorted(vip, key=lambda a: (":" in a, a)), *sorted(os_paths)]


def _panel_samples(samples: Iterable[DnsSample], panel: str) -> list[DnsSample]:
    parts = panel.split("|")
    if parts[0] == "os":
        return [s for s in samples if s.mode == "os" and s.probe == parts[1]
                and s.server == parts[2]]
    return [s for s in samples if s.mode != "os" and s.server == parts[1]]


def _panel_title(panel: str) -> str:
    parts = panel.split("|")
    if parts[0] == "os":
        return f"{parts[1]}'s own resolver (learned by DHCP/RA) → {parts[2]}"
    return f"DNS → {parts[1]}"


def _fault_label(f: FaultEvent) -> str:
    if not f.injected:
        return f"{' '.join(f.targets)} {f.fault.removeprefix('self_')}ed itself".strip()
    return f"{f.fault} {' '.join(f.targets)}".strip()


def _fault_windows(tl: Timeline) -> list[tuple[float, float | None, str, bool]]:
    """(start, end or None, label, injected) for every fault window of the run."""
    starts: dict[str, FaultEvent] = {}
    out: list[tuple[float, float | None, str, bool]] = []
    for f in tl.of(FaultEvent):
        if f.phase == "start":
            starts[f.fault_id] = f
        elif f.fault_id in starts:
            s = starts.pop(f.fault_id)
            out.append((s.t, f.t, _fault_label(s), s.injected))
    for s in starts.values():
        out.append((s.t, None, _fault_label(s), s.injected))
    return out


def plot_timeline(tl: Timeline, path: Path, title: str | None = None,
                  metrics: checks.Metrics | None = None) -> None:
    samples = tl.of(DnsSample)
    dhcp = tl.of(DhcpEvent)
    vips = tl.of(VipEvent)
    logs = [e for e in tl.of(LogEvent) if e.source in ("heartbeat", "resource")]
    arp = [e for e in tl.of(LogEvent) if e.source == "neighbour"]
    t0 = tl.header.meta.get("t0") or (tl.t0 if tl.t0 is not None else 0.0)
    t_end = tl.t_end if tl.t_end is not None else t0 + 1
    m = metrics or checks.metrics(tl)
    colours: dict[str, str] = {}
    for n in ("lsvm1", "lsvm2"):
        node_colour(n, colours)

    servers = _panels(samples)
    dhcp_clients = sorted({e.client for e in dhcp})[:MAX_DHCP_ROWS]
    rows: list[tuple[str, float]] = [("dns:" + s, 2.2) for s in servers]
    if vips:
        rows.append(("vip", 0.35 * max(1, len({v.vip for v in vips}))))
    if logs:
        rows.append(("logs", 0.6))
    if dhcp_clients:
        rows.append(("dhcp", min(3.0, 0.8 + 0.04 * len(dhcp_clients))))
    if not rows:
        rows.append(("empty", 1.0))
    fig, axes = plt.subplots(
        len(rows), 1, sharex=True, figsize=(13, 1.2 + sum(h for _, h in rows)),
        gridspec_kw={"height_ratios": [h for _, h in rows]}, squeeze=False,
    )
    ax_list = [a[0] for a in axes]
    windows = _fault_windows(tl)

    def x(t: float) -> float:
        return t - t0

    fail_y = 3000.0  # ms: the band above any real latency where failures are drawn
    for (kind, _), ax in zip(rows, ax_list, strict=True):
        if kind.startswith("dns:"):
            panel = kind[4:]
            server = panel.split("|")[-1]
            mine = _panel_samples(samples, panel)
            good = [s for s in mine if s.latency_s is not None and s.rcode not in ("timeout",)]
            by_node: dict[str | None, list[DnsSample]] = defaultdict(list)
            for s in good:
                by_node[s.node if s.ok else "__bad"].append(s)
            for node, ss in by_node.items():
                if node == "__bad":
                    continue
                ax.scatter([x(s.t) for s in ss], [max(s.latency_s or 0, 1e-5) * 1000 for s in ss],
                           s=6, color=node_colour(node, colours), linewidths=0,
                           label=node or "unknown node")
            # when the client's ARP/ND entry for this server moved (gratuitous ARP, new reply)
            moves = [e for e in arp if e.fields.get("ip") == server]
            for e in moves:
                ax.scatter([x(e.t)], [fail_y / 12], marker="v", s=36,
                           color=node_colour(e.fields.get("node"), colours),
                           edgecolors="black", linewidths=0.5, zorder=5)
            bad = [s for s in mine if not s.ok]
            if bad:
                ax.scatter([x(s.t) for s in bad], [fail_y] * len(bad), marker="|", s=60,
                           color=FAIL, linewidths=1.2, label="failed")
            ax.set_yscale("log")
            ax.set_ylim(0.05, fail_y * 2.5)
            ax.axhline(fail_y / 2, color="#dddddd", linewidth=0.8)
            ax.set_ylabel("latency ms", fontsize=8)
            n_ok = sum(1 for s in mine if s.ok)
            outs = [o for o in checks.outages(mine)]
            longest = max((o.duration_s for o in outs), default=0.0)
            kinds = checks.failed_by_kind(mine)
            failed_txt = ", ".join(f"{k} {v}" for k, v in kinds.items() if v) or "none failed"
            ax.set_title(
                f"{_panel_title(panel)}:  {n_ok}/{len(mine)} ok ({failed_txt});  "
                f"longest outage {longest:.2f} s", fontsize=9, loc="left")
        elif kind == "vip":
            names = sorted({v.vip for v in vips}, key=lambda a: (":" in a, a))
            for i, vip in enumerate(names):
                evs = [v for v in vips if v.vip == vip]
                for j, v in enumerate(evs):
                    end = evs[j + 1].t if j + 1 < len(evs) else t_end
                    holders = sorted(set(v.holders))
                    if not holders:
                        ax.barh(i, x(end) - x(v.t), left=x(v.t), height=0.8, color="#f2f2f2",
                                edgecolor=FAIL, linewidth=0.5)
                        continue
                    colour = FAIL if len(holders) > 1 else node_colour(holders[0], colours)
                    ax.barh(i, x(end) - x(v.t), left=x(v.t), height=0.8, color=colour,
                            hatch="//" if len(holders) > 1 else None, edgecolor="white")
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_title("VIP holder (red hatched: held by two nodes; pale: by nobody)",
                         fontsize=9, loc="left")
        elif kind == "logs":
            nodes = sorted({e.node for e in logs})
            for i, node in enumerate(nodes):
                es = [e for e in logs if e.node == node]
                ax.scatter([x(e.t) for e in es], [i] * len(es), marker="|", s=40,
                           color=node_colour(node, colours))
            ax.set_yticks(range(len(nodes)), nodes, fontsize=7)
            ax.set_ylim(-0.7, len(nodes) - 0.3)
            ax.set_title("heartbeat / resource log lines", fontsize=9, loc="left")
        elif kind == "dhcp":
            row = {c: i for i, c in enumerate(dhcp_clients)}
            styles: dict[str, tuple[str, int, str]] = {
                "send": ("|", 10, "#bbbbbb"),
                "bound": ("o", 10, "#2ca02c"),
                "renewed": ("o", 10, "#17becf"),
                "rebound": ("D", 10, "#9467bd"),
                "nak": ("x", 20, FAIL),
                "timeout": ("x", 20, "#ff9896"),
                "released": ("s", 8, "#7f7f7f"),
            }
            for ev, (marker, size, colour) in styles.items():
                des = [e for e in dhcp if e.event == ev and e.client in row]
                if des:
                    ax.scatter([x(e.t) for e in des], [row[e.client] for e in des], label=ev,
                               marker=marker, s=size, color=colour,
                               linewidths=1 if marker in "|x" else 0)
            ax.set_yticks([])
            ax.set_ylabel(f"{len(dhcp_clients)} clients", fontsize=8)
            ax.set_ylim(-1, len(dhcp_clients))
            real = len(dhcp_clients) - m.dhcp_clients
            ax.set_title(
                (f"DHCP fleet: {m.dhcp_bound_at_end}/{m.dhcp_clients} bound at end, "
                 f"longest wait for an ACK{' since the fault' if m.fault else ''} "
                 f"{m.dhcp_outage_s:.2f} s, NAKs {m.dhcp_naks}"
                 if m.dhcp_clients else "DHCP: no fleet ran")
                + (f"; {real} real OS client{'s' if real != 1 else ''} (dhclient)"
                   if real > 0 else ""),
                fontsize=9, loc="left")
            if ax.get_legend_handles_labels()[0]:  # a lane with nothing drawn has no legend
                ax.legend(loc="upper right", fontsize=7, ncol=7, framealpha=0.8)
        else:
            ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
        for start, end, _label, injected in windows:
            # what the design did to itself is hatched orange, apart from the injected faults
            ax.axvspan(x(start), x(end if end is not None else t_end),
                       color="#000000" if injected else SELF_COLOUR,
                       alpha=0.08 if injected else 0.15, linewidth=0,
                       hatch=None if injected else "//")
        ax.grid(axis="x", color="#eeeeee")

    top = ax_list[0]
    for start, _end, label, injected in windows:
        top.annotate(label, xy=(x(start), 0.75 if injected else 0.55),
                     xycoords=("data", "axes fraction"), xytext=(3, 0),
                     textcoords="offset points", fontsize=8,
                     color="#444444" if injected else SELF_COLOUR, fontweight="bold")
    injected_windows = [w for w in windows if w[3]]
    if m.takeover_s is not None and injected_windows:
        tk = injected_windows[0][0] + m.takeover_s
        for ax in ax_list:
            ax.axvline(x(tk), color="#2ca02c", linestyle="--", linewidth=1)
        top.annotate(f"takeover {m.takeover_s:.2f} s", xy=(x(tk), 0.05),
                     xycoords=("data", "axes fraction"), xytext=(4, 0),
                     textcoords="offset points", fontsize=8, color="#2ca02c")
    ax_list[-1].set_xlabel("seconds since start of run")
    handles = [Patch(color=c, label=n) for n, c in colours.items()]
    handles += [Patch(color=FAIL, label="failed query"),
                Patch(color="#000000", alpha=0.15, label="fault window")]
    if any(not w[3] for w in windows):
        handles.append(Patch(facecolor=SELF_COLOUR, alpha=0.3, hatch="//",
                             label="the design's own reboot"))
    dns = (f"queries {m.queries}, failed {m.failed}, longest outage {m.outage_s:.2f} s"
           + (" (ongoing)" if m.outage_ongoing else "")) if m.queries else "no DNS probe ran"
    summary = (dns
               + (f", takeover {m.takeover_s:.2f} s" if m.takeover_s is not None else "")
               + (f", split brain {m.split_brain_s:.1f} s" if m.split_brain_s else ""))
    fig.suptitle(f"{title or tl.header.run_id}\n{summary}", fontsize=11, x=0.01, ha="left")
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=len(handles))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_artifacts(directory: Path, tl: Timeline, title: str | None = None,
                    **extra: Any) -> checks.Metrics:
    """timeline.jsonl, metrics.json and timeline.png into ``directory``; returns the metrics."""
    directory.mkdir(parents=True, exist_ok=True)
    tl.dump(directory / "timeline.jsonl")
    m = checks.metrics(tl)
    write_metrics(directory / "metrics.json", m, run_id=tl.header.run_id, seed=tl.header.seed,
                  **extra)
    plot_timeline(tl, directory / "timeline.png", title=title, metrics=m)
    return m
