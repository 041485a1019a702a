"""`lab report`: the summary table from a hand-made history, and the page as a browser shows
it (headless Chromium: the table's rows, every image present and decodable)."""

from __future__ import annotations

import base64
import html.parser
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from lab.cli import main
from lab.report_html import summarize

VERSIONS = {"dnsmasq": "2.90-4", "heartbeat": "1:3.0.6-13", "hapair-lab": "0.1.0"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def record(night: int, scenario: str, takeover: float | None, ok: bool = True,
           versions: dict[str, str] | None = None, **metrics: Any) -> dict[str, Any]:
    run = f"nightly-202611{night:02d}"
    sla = {"takeover_s": {"bound": "<= 30", "source": "slas.toml:12", "ok": ok,
                          "text": f"{scenario}[seed]: takeover_s {takeover} > 30 "
                                  "(slas.toml:12)"},
           "leases_lost": {"bound": "== 0", "source": "slas.toml:9", "ok": True, "text": ""}}
    return {"schema": 1, "run_id": run, "test_id": f"scenarios/x.py::test_{scenario}",
            "scenario": scenario, "profile": "seed", "repetition": None,
            "wall_time": f"2026-11-{night:02d}T02:00:00+00:00", "duration_s": 90.0,
            "git_revision": "0123456789abcdef", "git_dirty": False, "host": "ci-1",
            "kernel": "6.18", "versions": versions or VERSIONS, "outcome": "passed" if ok
            else "failed", "passed": ok,
            "metrics": {"takeover_s": takeover, "leases_lost": 0, "outage_s": takeover,
                        **metrics},
            "sla": sla, "timeline": f"{run}/{scenario}/probes/timeline.png"}


def hand_made_history(results: Path) -> Path:
    """Two scenarios over six nights: kill_primary steady then a slow night inside its SLA
    (a regression); cable_pull_primary breaking its SLA on the last night, after a dnsmasq
    upgrade. Small timeline plots beside it."""
    records = [record(n, "kill_primary", 24.0 + 0.2 * (n % 2)) for n in range(1, 6)]
    records.append(record(6, "kill_primary", 29.9))
    newer = {**VERSIONS, "dnsmasq": "2.91-1"}
    records += [record(n, "cable_pull_primary", 22.0, split_brain_s=20.0) for n in range(1, 6)]
    records.append(record(6, "cable_pull_primary", 31.5, ok=False, versions=newer,
                          split_brain_s=21.0))
    for r in records:
        plot = results / r["timeline"]
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig = plt.figure(figsize=(2, 1))
        fig.gca().plot([0, 1], [1, 0], color="#ff7f0e")
        fig.savefig(plot, dpi=40)
        plt.close(fig)
    path = results / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_summary_names_breaches_regressions_and_trends(tmp_path: Path) -> None:
    path = hand_made_history(tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    summary = summarize(records)
    rows = {(r.scenario, r.metric): r for r in summary.rows}
    assert summary.breaches == ["cable_pull_primary[seed]: takeover_s 31.5 > 30 (slas.toml:12)"]
    assert [(c.scenario, c.metric) for c in summary.regressions] == [
        ("kill_primary", "takeover_s"), ("kill_primary", "outage_s")]
    kill = rows[("kill_primary", "takeover_s")]
    assert (kill.sla, kill.latest, kill.verdict, kill.comparison.arrow) == (
        "<= 30", "29.9", "regression", "↑")
    cable = rows[("cable_pull_primary", "takeover_s")]
    assert (cable.verdict, cable.comparison.status) == ("breach", "no-baseline")  # new dnsmasq
    assert rows[("kill_primary", "leases_lost")].verdict == "ok"
    assert rows[("cable_pull_primary", "split_brain_s")].verdict == "-"  # no SLA on it
    assert summary.failed


class _Page(html.parser.HTMLParser):
    """The summary table's rows and every image of a page as the browser left its DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[dict[str, str]] = []
        self._cell: list[str] | None = None
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and a.get("id") == "summary":
            self._in_summary = True
        elif tag == "tr" and self._in_summary and "metric-row" in a.get("class", "").split():
            self.rows.append([])
        elif tag == "td" and self._in_summary and self.rows:
            self._cell = []
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (`make setup` installs it)")
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def test_the_report_renders_in_a_browser_with_its_table_and_every_plot(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (`make setup` installs it)")
    history = hand_made_history(tmp_path / "results")
    out = tmp_path / "results" / "report.html"
    assert main(["report", str(history), "--out", str(out), "--check"]) == 1  # breach + regr.
    url = out.resolve().as_uri()

    dom = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    by_metric = {(r[0], r[2]): r for r in page.rows}
    assert len(page.rows) == 7  # kill_primary: 3 tracked metrics; cable_pull_primary: 4
    assert by_metric[("kill_primary", "takeover_s")][3:] == ["<= 30", "29.9", "↑ 24.2",
                                                            "regression"]
    assert by_metric[("cable_pull_primary", "takeover_s")][6] == "breach"
    # per scenario: its latest timeline and its trend plots, every one a PNG inside the page
    alts = sorted(i["alt"] for i in page.images)
    assert alts == ["timeline of cable_pull_primary [seed]", "timeline of kill_primary [seed]",
                    "trends of cable_pull_primary [seed]", "trends of kill_primary [seed]"]
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(image["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"

    shot = tmp_path / "shot.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1400,3000", url,
                    profile=tmp_path / "profile")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    # the page drew something: plots and table, not a blank or an error page
    coloured = (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean()
    assert coloured > 0.001
