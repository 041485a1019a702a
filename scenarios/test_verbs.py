"""Every node verb in every node state: it does what it says, or refuses with one line.

The CLI runs as a subprocess, as a user would run it; the node is put in each state with the
Node API. A refusal is one ``lab: ...`` line on stderr with status 1 (wrong state), and leaves
the node as it was; nothing ever prints a traceback or hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import pytest

from lab.lab import Lab
from lab.node import Node, NodeError
from lab.wait import wait_for

pytestmark = pytest.mark.lab
LAB = [sys.executable, "-m", "lab.cli"]
NODE, PORT = "lsvm2", "enp2s1"

VERBS: dict[str, list[str]] = {
    "crash": [NODE], "start": [NODE], "shutdown": [NODE], "reboot": [NODE],
    "freeze": [NODE], "thaw": [NODE], "cut": [f"{NODE}:{PORT}"], "heal": [f"{NODE}:{PORT}"],
    "exec": [NODE, "--", "true"], "shell": [NODE],
}
# state before -> verb -> (exit status, state after); "frozen+cut" is a frozen node whose
# cable is out. Asking for what already is (freeze a frozen node, heal a healthy cable) is
# done and says so; a stopped node has nothing to act on, so only `start` works there.
EXPECTED: dict[str, dict[str, tuple[int, str]]] = {
    "running": {"crash": (0, "stopped"), "start": (1, "running"), "shutdown": (0, "stopped"),
                "reboot": (0, "running"), "freeze": (0, "frozen"), "thaw": (0, "running"),
                "cut": (0, "cut"), "heal": (0, "running"), "exec": (0, "running"),
                "shell": (0, "running")},
    "stopped": {**dict.fromkeys(VERBS, (1, "stopped")), "start": (0, "running")},
    "frozen": {"crash": (0, "stopped"), "start": (1, "frozen"), "shutdown": (0, "stopped"),
               "reboot": (0, "running"), "freeze": (0, "frozen"), "thaw": (0, "running"),
               "cut": (0, "frozen+cut"), "heal": (0, "frozen"), "exec": (1, "frozen"),
               "shell": (1, "frozen")},
    "cut": {"crash": (0, "stopped"), "start": (1, "cut"), "shutdown": (0, "stopped"),
            "reboot": (0, "running"), "freeze": (0, "frozen+cut"), "thaw": (0, "cut"),
            "cut": (0, "cut"), "heal": (0, "running"), "exec": (0, "cut"), "shell": (0, "cut")},
}


def run_lab(lab: Lab, verb: str, *args: str, timeout: float = 30
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, verb, "--name", lab.name, *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def cable_out(node: Node) -> bool:
    ports = node.lab.fabric.port_states(node.spec).values()
    return any(p["present"] and not p["up"] for p in ports)


def observed(node: Node) -> str:
    """The node's state as the table names it."""
    state = node.state
    if state != "stopped" and cable_out(node):
        return "cut" if state == "running" else f"{state}+cut"
    return state


def bring(node: Node, want: str) -> None:
    """Put the node in state `want` by way of a plain running node (unless it is there)."""
    if observed(node) == want:
        return
    if node.state == "stopped":
        node.start(settle=False)
    node.thaw()
    node.unblock()
    if want == "stopped":
        node.crash()
    elif want == "frozen":
        node.freeze()
    elif want == "cut":
        node.block(PORT)
    assert observed(node) == want


def leftovers(node: Node, state: str) -> list[str]:
    """What a node in `state` must not have: a frozen cgroup unless frozen; a stopped node's
    processes or switch ports."""
    found = []
    if "frozen" not in state and node.cgroup.frozen():
        found.append("frozen cgroup")
    if state == "stopped":
        if node.cgroup.pids():
            found.append(f"processes {node.cgroup.pids()}")
        ports = [n for n, p in node.lab.fabric.port_states(node.spec).items() if p["present"]]
        if ports:
            found.append(f"switch ports {ports}")
    return found


def check_row(lab: Lab, state: str, verb: str) -> list[str]:
    """Run one verb on the node in one state; what went wrong, if anything."""
    node = lab[NODE]
    bring(node, state)
    want_status, want_after = EXPECTED[state][verb]
    result = run_lab(lab, verb, *VERBS[verb])
    after = observed(node)
    row = f"{verb} on a {state} node"
    problems = []
    if result.returncode != want_status:
        problems.append(f"{row}: exit {result.returncode}, expected {want_status}: "
                        f"{result.stderr.strip()!r}")
    if "Traceback" in result.stderr:
        problems.append(f"{row}: traceback: {result.stderr[-300:]!r}")
    lines = result.stderr.strip().splitlines()
    if want_status and (len(lines) != 1 or not lines[0].startswith("lab: ")):
        problems.append(f"{row}: refusal is not one `lab: ...` line: {result.stderr!r}")
    if after != want_after:
        problems.append(f"{row}: node is {after} afterwards, expected {want_after}")
    problems += [f"{row}: left a {thing}" for thing in leftovers(node, after)]
    return problems


def test_every_verb_in_every_state(lab: Lab) -> None:
    started = time.monotonic()
    problems = [p for state in EXPECTED for verb in VERBS for p in check_row(lab, state, verb)]
    assert not problems, "\n".join(problems)
    print(f"{len(EXPECTED) * len(VERBS)} rows in {time.monotonic() - started:.1f} s")


def test_crash_twice_then_start_brings_the_node_up(lab: Lab) -> None:
    assert run_lab(lab, "crash", NODE).returncode == 0
    again = run_lab(lab, "crash", NODE)
    assert again.returncode == 1
    assert again.stderr.strip() == f"lab: {NODE} is not running (stopped)"
    assert not lab[NODE].cgroup.frozen(), "a refused crash must not freeze the cgroup"
    start = run_lab(lab, "start", NODE)
    assert start.returncode == 0, start.stderr
    assert lab[NODE].state == "running"
    assert lab.c1.execute("ping -c1 -W2 -q 192.168.1.7")[0] == 0


def exec_in(lab: Lab, *args: str, timeout: float = 15) -> tuple[subprocess.CompletedProcess[str],
                                                                 float]:
    started = time.monotonic()
    result = run_lab(lab, "exec", *args, timeout=timeout)
    return result, time.monotonic() - started


def test_exec_on_a_frozen_node_refuses_or_waits_with_timeout(lab: Lab) -> None:
    c1 = lab.c1
    c1.freeze()
    refused, took = exec_in(lab, "c1", "--", "true")
    assert refused.returncode == 1 and took < 5
    assert refused.stderr.strip() == \
        "lab: c1 is frozen: `lab thaw c1` first, or --timeout S to wait"
    waited, took = exec_in(lab, "--timeout", "1", "c1", "--", "true")
    assert waited.returncode == 124, waited.stderr
    assert 1 <= took < 5
    assert not [cmd for _, cmd in c1.processes() if cmd.startswith("nsenter")], \
        "nothing may be started in a frozen node while waiting for the thaw"
    started = time.monotonic()
    with pytest.raises(NodeError, match="c1 is frozen"):
        c1.execute("true", timeout=30)
    assert time.monotonic() - started < 1, "Node.execute must refuse, not wait for its timeout"
    thawer = threading.Timer(0.5, c1.thaw)
    thawer.start()
    thawed, _ = exec_in(lab, "--timeout", "10", "c1", "--", "echo", "ran")
    thawer.join()
    assert thawed.returncode == 0 and thawed.stdout == "ran\n", thawed.stderr
    killed, took = exec_in(lab, "--timeout", "1", "c1", "--", "sleep", "30")
    assert killed.returncode == 124 and took < 5
    assert not sleeping(c1)


def sleeping(node: Node, argv: Sequence[str] = ("sleep", "30")) -> list[int]:
    return [pid for pid, cmd in node.processes() if cmd == " ".join(argv)]


def test_sigterm_ends_lab_exec_and_its_command(lab: Lab) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([*LAB, "exec", "--name", lab.name, "c1", "--", "sleep", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: sleeping(lab.c1), timeout=10, what="sleep 30 running in c1")
        started = time.monotonic()
        os.kill(proc.pid, sig)
        _, errors = proc.communicate(timeout=5)  # ends only once nothing holds its pipes
        assert time.monotonic() - started < 2, f"{sig!r}: lab exec took too long to end"
        assert proc.returncode == 128 + sig, (proc.returncode, errors)
        assert not sleeping(lab.c1), f"{sig!r}: the command outlived lab exec"


def test_down_of_a_lab_that_does_not_exist() -> None:
    result = subprocess.run([*LAB, "down", "--name", "nosuch"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "lab: no lab named 'nosuch' (see `lab list`)"
    assert "removed" not in result.stdout
