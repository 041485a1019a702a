"""`lab watch`'s picture, rendered from recorded states (no lab needed)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lab import watch
from lab.probes.cli import Tail
from lab.probes.records import DnsSample, to_json

VIP = "192.168.1.4"


def s(t: float, node: str | None = "lsvm2", rcode: str = "NOERROR", server: str = VIP,
      lat: float | None = 0.0012) -> DnsSample:
    return DnsSample(t=t, probe="c1", server=server, name="n", qtype="A", transport="udp",
                     rcode=rcode, latency_s=lat if rcode == "NOERROR" else None, node=node)


def text(state: watch.WatchState) -> str:
    con = Console(record=True, width=140, color_system=None)
    con.print(watch.render(state))
    return con.export_text()


def test_steady_state_view() -> None:
    samples = [s(100 + i / 20) for i in range(200)]
    st = watch.state_from("hapair", samples, now=110.0, window_s=5,
                          vip_holders={VIP: ("lsvm2",)},
                          drbd={"lsvm1": "Secondary", "lsvm2": "Primary"},
                          heartbeat={"lsvm2": "lsvm1=active lsvm2=active"})
    (v,) = st.servers
    assert (v.queries, v.ok, v.last_node, v.nodes) == (100, 100, "lsvm2", {"lsvm2": 100})
    out = text(st)
    assert "100.0% (100/100)" in out and "1.20" in out and "Primary" in out
    assert "SPLIT BRAIN" not in out and "lab hapair" in out


def test_takeover_in_progress_view() -> None:
    samples = [s(100 + i / 20) for i in range(100)] + [
        s(105 + i / 20, node=None, rcode="timeout") for i in range(40)]
    st = watch.state_from("hapair", samples, now=107.0, window_s=5,
                          vip_holders={VIP: (), "192.168.3.4": ("lsvm1", "lsvm2")},
                          events=["node.crash lsvm2"])
    (v,) = st.servers
    assert v.last_failure == "timeout" and v.seconds_since_ok is not None
    assert v.seconds_since_ok > 1.9
    out = text(st)
    assert "nobody" in out and "SPLIT BRAIN: lsvm1, lsvm2" in out
    assert "node.crash lsvm2" in out and "timeout" in out


def test_tail_reads_incrementally_and_drops_old(tmp_path: Path) -> None:
    import time
    now = time.monotonic()
    p = tmp_path / "dns.jsonl"
    p.write_text(to_json(s(now - 100)) + "\n" + to_json(s(now)) + "\n" + '{"kind":"dns"')
    tail = Tail()
    assert [x.t for x in tail.read([p], keep_s=10)] == [now]
    with p.open("a") as f:
        f.write(',"t":1}\n' + to_json(s(now + 0.05)) + "\n")
    got = tail.read([p], keep_s=10)
    assert [x.t for x in got] == [now, now + 0.05]  # the torn line was skipped, not doubled
