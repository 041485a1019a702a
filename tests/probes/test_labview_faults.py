"""Lab events as fault windows: injected faults apart from what the design did to itself."""

from __future__ import annotations

from lab import checks
from lab.probes.labview import faults_from_lab_events


def test_handler_reboot_is_the_design_not_an_injected_fault() -> None:
    events = [
        {"t_mono": 1.0, "event": "fault.start", "fault": "switch_reboot",
         "fault_id": "switch_reboot-1", "targets": []},
        {"t_mono": 9.0, "event": "fault.end", "fault": "switch_reboot",
         "fault_id": "switch_reboot-1", "targets": []},
        {"t_mono": 10.0, "event": "node.power_request", "node": "lsvm2", "verb": "reboot",
         "how": "force"},
        {"t_mono": 10.1, "event": "node.crash", "node": "lsvm2"},
        {"t_mono": 11.0, "event": "node.start", "node": "lsvm2"},
        {"t_mono": 20.0, "event": "node.crash", "node": "lsvm2"},
    ]
    faults = faults_from_lab_events(events)
    starts = [f for f in faults if f.phase == "start"]
    assert [(f.fault, f.injected) for f in starts] == [
        ("switch_reboot", True), ("self_reboot", False), ("crash", True)]
    assert starts[1].detail == "`reboot -f` run inside lsvm2"
    ends = [f for f in faults if f.phase == "end"]
    assert [(f.fault_id, f.injected) for f in ends][-1][1] is False
    # the fault a run is measured from is the first injected one
    assert checks.first_fault(faults[2:]) is not None
    assert checks.first_fault(faults[2:]).fault == "crash"  # type: ignore[union-attr]
