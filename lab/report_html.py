"""``lab report``: the history as one static HTML page (no server, every image inside it).

Top to bottom: what needs a look (SLA breaches and regressions of each scenario's latest run),
a table of scenarios x metrics (the SLA bound, the latest value, the trend against the
baseline, the verdict), then per scenario its latest timeline plot and one trend plot per
metric over the whole history, with the SLA as it was at each run and a marker wherever the
versions under test changed. Images are embedded as ``data:`` URIs so the page can be mailed,
archived as a CI artifact or opened from any directory. Matplotlib's Agg backend only.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lab.history import breaches, timeline_path
from lab.regression import (
    MIN_RUNS,
    WINDOW,
    Comparison,
    Run,
    compare_run,
    metrics_of,
    runs_by_scenario,
    version_changes,
)
from lab.verdict import Bound, BoundError, parse_bound

STATUS_CLASS = {"breach": "bad", "regression": "bad", "ok": "good", "-": "none"}


@dataclass(frozen=True)
class Row:
    """One line of the summary table: one metric of one scenario's latest run."""

    scenario: str
    profile: str
    metric: str
    sla: str  # the bound as written, or "" when the SLA has none
    sla_source: str
    latest: str
    comparison: Comparison
    verdict: str  # ok, breach, regression, "breach, regression", or "-"


@dataclass(frozen=True)
class Summary:
    rows: list[Row]
    breaches: list[str]
    regressions: list[Comparison]

    @property
    def failed(self) -> bool:
        return bool(self.breaches or self.regressions)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _latest_sla(run: Run, metric: str) -> tuple[str, str, bool | None]:
    """(bound, source, held in every repetition) of the latest run; ("", "", None) if none."""
    entries = [e for r in run.records if (e := (r.get("sla") or {}).get(metric))]
    if not entries:
        return "", "", None
    # "in 3..20" / "is null": how the first records of schema 1 wrote a band and null
    bound = str(entries[-1]["bound"]).removeprefix("in ").removeprefix("is ")
    return bound, str(entries[-1]["source"]), all(e["ok"] for e in entries)


def _latest_text(run: Run, metric: str) -> str:
    values = run.values(metric)
    if not values:
        return "not measured"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(run.value(metric))} ({fmt(min(values))}-{fmt(max(values))}, {len(values)} runs)"


def summarize(records: Sequence[Mapping[str, Any]], window: int = WINDOW,
              min_runs: int = MIN_RUNS) -> Summary:
    """The summary table and what fails the nightly: each scenario's latest run (pure)."""
    rows: list[Row] = []
    breach_lines: list[str] = []
    regressions: list[Comparison] = []
    for (scenario, profile), runs in runs_by_scenario(records).items():
        latest = runs[-1]
        for r in latest.records:
            breach_lines += breaches(r)
        bounded = sorted({m for r in latest.records for m in (r.get("sla") or {})})
        for metric in [*metrics_of(runs), *[m for m in bounded if m not in metrics_of(runs)]]:
            comparison = compare_run(runs, metric, scenario, profile, window, min_runs)
            if comparison.status == "regression":
                regressions.append(comparison)
            bound, source, held = _latest_sla(latest, metric)
            verdict = ", ".join(
                [*(["breach"] if held is False else []),
                 *(["regression"] if comparison.status == "regression" else [])]) or (
                "ok" if held else "-")
            rows.append(Row(scenario, profile, metric, bound, source,
                            _latest_text(latest, metric), comparison, verdict))
    return Summary(rows, breach_lines, regressions)


# -- plots ----------------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _bound(metric: str, text: str) -> Bound | None:
    try:
        return parse_bound(metric, text)
    except BoundError:
        return None


def _limits(bound: Bound | None) -> tuple[float | None, float | None]:
    """(low, high) a bound draws on a trend plot."""
    if bound is None or bound.value is None:
        return None, None
    if isinstance(bound.value, tuple):
        return bound.value
    if bound.op in ("<=", "<"):
        return None, bound.value
    if bound.op in (">=", ">"):
        return bound.value, None
    if bound.op == "==":
        return bound.value, bound.value
    return None, None


def trend_png(runs: Sequence[Run], metrics: Sequence[str], title: str) -> bytes:
    """One small plot per metric: every repetition a dot, each run's median joined by a line,
    the SLA as recorded at each run (red dashed; a band shaded), version changes as dotted
    violet lines."""
    ncols = min(3, max(1, len(metrics)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 2.6 * nrows), squeeze=False)
    xs = list(range(len(runs)))
    changes = version_changes(runs)
    for ax, metric in zip([a for row in axes for a in row], metrics, strict=False):
        for x, run in zip(xs, runs, strict=True):
            values = run.values(metric)
            ax.scatter([x] * len(values), values, s=10, color="#9aa7b8", zorder=3)
        medians = [(x, v) for x, run in zip(xs, runs, strict=True)
                   if (v := run.value(metric)) is not None]
        if medians:
            ax.plot([m[0] for m in medians], [m[1] for m in medians], color="#1f77b4",
                    marker="o", markersize=3, linewidth=1.2, zorder=4)
        lows, highs = [], []
        for run in runs:
            bound, _, _ = _latest_sla(run, metric)
            low, high = _limits(_bound(metric, bound) if bound else None)
            lows.append(math.nan if low is None else low)
            highs.append(math.nan if high is None else high)
        for line in (lows, highs):
            if any(not math.isnan(v) for v in line):
                ax.step(xs, line, where="mid", color="#d62728", linestyle="--", linewidth=1,
                        zorder=2)
        if any(not math.isnan(lo) and not math.isnan(hi) and lo < hi
               for lo, hi in zip(lows, highs, strict=True)):
            ax.fill_between(xs, lows, highs, step="mid", color="#d62728", alpha=0.06)
        for change in changes:
            ax.axvline(change.index - 0.5, color="#9467bd", linestyle=":", linewidth=1.2)
            ax.annotate("versions", xy=(change.index - 0.5, 1), xycoords=("data", "axes fraction"),
                        xytext=(2, -10), textcoords="offset points", fontsize=7,
                        color="#9467bd")
        ax.set_title(metric, fontsize=9, loc="left")
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_xticks(xs, [r.wall_time[5:16].replace("T", " ") or r.run_id for r in runs],
                      fontsize=6, rotation=30, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", color="#eeeeee")
    for ax in [a for row in axes for a in row][len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return _png(fig)


# -- the page -------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
tr.first td { border-top: 2px solid #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00020; font-weight: bold; }
.good { color: #1b7f3a; }
.none { color: #888; }
.regression { color: #b00020; } .better { color: #1b7f3a; } .same { color: #666; }
section.scenario { margin-top: 2em; border-top: 2px solid #ccc; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.missing { color: #888; font-style: italic; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(summary: Summary) -> str:
    head = ("<tr><th>scenario</th><th>profile</th><th>metric</th><th>SLA</th><th>latest</th>"
            "<th>trend (vs baseline median)</th><th>verdict</th></tr>")
    lines = [f'<table id="summary">{head}']
    previous = None
    for row in summary.rows:
        c = row.comparison
        first = " first" if (row.scenario, row.profile) != previous else ""
        previous = (row.scenario, row.profile)
        trend = (f'<span class="{c.status}">{c.arrow} {fmt(c.baseline)}</span>'
                 if c.baseline is not None else f'<span class="none">{c.arrow} no baseline '
                 f"({c.baseline_runs} earlier runs with these versions)</span>")
        verdict_class = STATUS_CLASS.get(row.verdict, "bad")
        sla = (f'<span title="{_e(row.sla_source)}">{_e(row.sla)}</span>' if row.sla else
               '<span class="none">-</span>')
        lines.append(
            f'<tr class="metric-row{first}"><td>{_e(row.scenario)}</td><td>{_e(row.profile)}</td>'
            f"<td>{_e(row.metric)}</td><td>{sla}</td><td class=num>{_e(row.latest)}</td>"
            f'<td>{trend}</td><td class="{verdict_class}">{_e(row.verdict)}</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _scenario_section(scenario: str, profile: str, runs: Sequence[Run]) -> str:
    latest = runs[-1]
    record = latest.records[-1]
    passed = sum(1 for r in latest.records if r.get("passed"))
    versions = ", ".join(f"{k} {v}" for k, v in sorted((record.get("versions") or {}).items()))
    parts = [f'<section class="scenario" id="{_e(scenario)}-{_e(profile)}">',
             f"<h2>{_e(scenario)} [{_e(profile)}]</h2>",
             f"<p>latest run {_e(latest.run_id)} ({_e(latest.wall_time)}, host "
             f"{_e(record.get('host', '?'))}, revision {_e(str(record.get('git_revision'))[:12])}"
             f"): {passed}/{len(latest.records)} passed; {_e(versions)}</p>"]
    for change in version_changes(runs):
        parts.append(f"<p>versions changed at run {_e(change.run_id)}: {_e(change)}</p>")
    plot = timeline_path(record)
    if plot is not None and plot.is_file():
        parts.append(f'<img class="timeline" alt="timeline of {_e(scenario)} [{_e(profile)}]" '
                     f'src="{data_uri(plot.read_bytes())}">')
    else:
        parts.append(f'<p class="missing">timeline plot not on this machine: '
                     f'{_e(record.get("timeline") or "not recorded")}</p>')
    metrics = metrics_of(runs)
    if metrics:
        png = trend_png(runs, metrics, f"{scenario} [{profile}] over {len(runs)} runs")
        parts.append(f'<img class="trend" alt="trends of {_e(scenario)} [{_e(profile)}]" '
                     f'src="{data_uri(png)}">')
    parts.append("</section>")
    return "\n".join(parts)


def render(records: Sequence[Mapping[str, Any]], sources: Sequence[str], generated: str,
           window: int = WINDOW, min_runs: int = MIN_RUNS) -> tuple[str, Summary]:
    """The page's HTML and its summary."""
    summary = summarize(records, window, min_runs)
    groups = runs_by_scenario(records)
    status = (f'<p class="bad">{len(summary.breaches)} SLA breach(es), '
              f"{len(summary.regressions)} regression(s) in the latest runs</p>"
              if summary.failed else '<p class="good">every latest run within its SLA, '
              "no regression</p>")
    look = "".join(f"<li>{_e(line)}</li>" for line in
                   [*summary.breaches, *(str(c) for c in summary.regressions)])
    body = [f"<h1>hapair-lab: failover SLAs over {len({r['run_id'] for r in records})} runs"
            "</h1>",
            f"<p>{len(records)} records from {_e(', '.join(sources))}; generated {_e(generated)}."
            f" A regression is a latest run worse than the median of the last {window} runs "
            f"with the same versions (at least {min_runs}) by more than its tolerance.</p>",
            status, f'<ul id="attention">{look}</ul>' if look else "",
            _table(summary),
            *(_scenario_section(s, p, runs) for (s, p), runs in groups.items())]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>hapair-lab report</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    return page, summary


def write_report(records: Sequence[Mapping[str, Any]], sources: Sequence[str], out: Path,
                 generated: str, window: int = WINDOW, min_runs: int = MIN_RUNS) -> Summary:
    page, summary = render(records, sources, generated, window, min_runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return summary
