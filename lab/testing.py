"""What a scenario author imports: the fixtures' types, verdicts and budgets, in one place.

Scenarios should depend on this surface, not on the modules behind it, so the instrument's
insides (probe processes, stream readers, timeline builders) can change without touching them.
"""

from __future__ import annotations

from lab.audits import AFTER_A_SPLIT
from lab.budgets import detection_s, failback_budget_s, ipv6addr_agent, takeover_budget_s
from lab.faults import Nemesis
from lab.lab import Lab
from lab.node import Node
from lab.probes.fixture import Probes
from lab.pytest_plugin import LabFactory, artifact_dir
from lab.recovery import HEALTHY, SERVED_ALONE, SERVED_UNREPLICATED, UNSERVED
from lab.verdict import expect
from lab.wait import WaitTimeout, wait_for

__all__ = [
    "AFTER_A_SPLIT",
    "HEALTHY",
    "SERVED_ALONE",
    "SERVED_UNREPLICATED",
    "UNSERVED",
    "Lab",
    "LabFactory",
    "Nemesis",
    "Node",
    "Probes",
    "WaitTimeout",
    "artifact_dir",
    "detection_s",
    "expect",
    "failback_budget_s",
    "ipv6addr_agent",
    "takeover_budget_s",
    "wait_for",
]
