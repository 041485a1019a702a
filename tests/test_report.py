"""Report: metrics.json, JUnit properties and the PNG (pixels checked, not just existence)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

from lab import checks, report
from lab.probes.clock import ClockMap, ClockPair
from lab.probes.records import DhcpEvent, DnsSample, FaultEvent, Record, VipEvent
from lab.timeline import Header, Timeline, merge

VIP = "192.168.1.4"


def crash_timeline() -> Timeline:
    recs: list[Record] = []
    for i in range(200):
        t = 10 + i / 20
        if 14 <= t < 16:
            recs.append(DnsSample(t=t, probe="c1", server=VIP, name="n", qtype="A",
                                  transport="udp", rcode="timeout"))
        else:
            recs.append(DnsSample(t=t, probe="c1", server=VIP, name="n", qtype="A",
                                  transport="udp", rcode="NOERROR", latency_s=0.001,
                                  node="lsvm2" if t < 14 else "lsvm1"))
    recs += [FaultEvent(14.0, "start", "crash", "f1", ("lsvm2",)),
             FaultEvent(18.0, "end", "crash", "f1", ("lsvm2",)),
             VipEvent(10.0, VIP, ("lsvm2",)), VipEvent(15.9, VIP, ("lsvm1",)),
             DhcpEvent(10.1, "02:10:00:00:00:01", "send", "SELECTING", msg="DISCOVER"),
             DhcpEvent(10.2, "02:10:00:00:00:01", "bound", "BOUND", address="192.168.1.21")]
    return Timeline(Header("unit-crash", ClockMap(ClockPair(0, 0)), seed=7), merge(recs))


def colour_present(img: np.ndarray, hex_colour: str, tol: float = 0.06) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).any())


def test_write_artifacts(tmp_path: Path) -> None:
    tl = crash_timeline()
    m = report.write_artifacts(tmp_path, tl, title="unit")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["run_id"] == "unit-crash" and data["seed"] == 7
    assert data["takeover_s"] == m.takeover_s and m.takeover_s is not None
    assert Timeline.load(tmp_path / "timeline.jsonl").records == tl.records
    img = mpimg.imread(tmp_path / "timeline.png")
    assert img.shape[0] > 300 and img.shape[1] > 800
    # both nodes' colours and the failure colour are really drawn
    for colour in (report.NODE_COLOURS["lsvm1"], report.NODE_COLOURS["lsvm2"], report.FAIL):
        assert colour_present(img, colour), colour


def test_plot_of_steady_state_has_no_failure_colour(tmp_path: Path) -> None:
    recs: list[Record] = [DnsSample(t=i / 20, probe="c1", server=VIP, name="n", qtype="A",
                                    transport="udp", rcode="NOERROR", latency_s=0.001,
                                    node="lsvm2") for i in range(100)]
    tl = Timeline(Header("steady", ClockMap(ClockPair(0, 0))), merge(recs))
    report.plot_timeline(tl, tmp_path / "p.png")
    img = mpimg.imread(tmp_path / "p.png")
    assert colour_present(img, report.NODE_COLOURS["lsvm2"])
    # the legend shows the failure colour once; the DNS panel must not: crop the legend away
    assert not colour_present(img[int(img.shape[0] * 0.25):], report.FAIL)


def test_plot_of_empty_timeline(tmp_path: Path) -> None:
    report.plot_timeline(Timeline(Header("e", ClockMap(ClockPair(0, 0)))), tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_junit_properties_flatten_scalars() -> None:
    m = checks.metrics(crash_timeline())
    props = dict(report.junit_properties(m))
    assert props["queries"] == "200"
    assert props["failed_by_kind.timeout"] == "40"
    assert props["answered_by.192.168.1.4.lsvm1"] == str(m.answered_by[VIP]["lsvm1"])
    assert "outages" not in props and props["leases_lost"] == "none"
    got: list[tuple[str, object]] = []
    report.record_properties(lambda k, v: got.append((k, v)), m)
    assert ("hapair.queries", "200") in got
