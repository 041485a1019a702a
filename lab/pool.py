"""Warm labs: the next scenario's lab boots while the current scenario runs.

A seed lab takes ~40 s to be ready, most of it heartbeat's own waits (its 10 s start-up delay,
the stock IPv6addr agents) during which the machine is idle. The pool uses that: when a test
takes its lab, the pool starts booting a lab like the one the *next* test will ask for (pytest
says which test comes next on this worker), so that test's setup is a hand-over instead of a
boot. A pooled lab is brand new: it is handed to one test and removed after it, never reused.

Each lab boots in a child process (``python -m lab.pool NAME SPEC``), like a `lab up` in another
terminal: the test process runs no extra threads beside its probes, and a lab a child made is
the same records-backed lab `Lab.attach` reopens. A lab that nobody takes is removed at the end
of the session; one whose child was killed (Ctrl-C, a crashed worker) is removed by its records
(`teardown`), exactly as `lab down` removes a SIGKILLed `lab up`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.lab import Lab
from lab.state import teardown

Key = tuple[str, str, str]  # (profile, stack, options as sorted JSON)
BOOT_TIMEOUT_S = 300.0


def key_of(profile: str, stack: str, options: dict[str, Any]) -> Key:
    return profile, stack, json.dumps(options, sort_keys=True, default=sorted)


@dataclass
class _Booting:
    name: str
    key: Key
    process: subprocess.Popen[bytes]


@dataclass
class LabPool:
    """Up to `size` labs booting ahead, for the key the next test is predicted to want."""

    size: int
    log_dir: Path
    new_name: Callable[[], str]
    booting: list[_Booting] = field(default_factory=list)
    handed: int = 0
    missed: int = 0

    def take(self, key: Key) -> Lab | None:
        """A ready lab for `key` (waiting for its boot to finish), or None when none was
        booting for it or its boot failed (the caller then boots one itself)."""
        entry = next((b for b in self.booting if b.key == key), None)
        if entry is None:
            self.missed += 1
            return None
        self.booting.remove(entry)
        try:
            rc = entry.process.wait(timeout=BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            self._discard(entry)
            self.missed += 1
            return None
        self.handed += 1
        return Lab.attach(entry.name)

    def prepare(self, key: Key | None) -> None:
        """Keep `size` labs for `key` booting (drop ones booting for another key: the next
        test wants something else)."""
        if self.size <= 0 or key is None or key[1] == "none":
            return  # a bare lab is up in a few seconds: not worth a lab in waiting
        for entry in [b for b in self.booting if b.key != key]:
            self.booting.remove(entry)
            self._discard(entry)
        while sum(1 for b in self.booting if b.key == key) < self.size:
            self.booting.append(self._boot(key))

    def close(self) -> None:
        """Remove every lab nobody took (called at the end of the session, also on ^C)."""
        while self.booting:
            self._discard(self.booting.pop())

    def _boot(self, key: Key) -> _Booting:
        name = self.new_name()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "lab.pool", name, json.dumps(list(key))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return _Booting(name, key, process)

    @staticmethod
    def _discard(entry: _Booting) -> None:
        if entry.process.poll() is None:
            entry.process.kill()  # our own child, by its PID
            entry.process.wait()
        teardown(entry.name)  # by the lab's records, whatever the child had made


def boot(name: str, key: Key) -> None:
    """The child's work: create the lab and bring it up until ready (removed on failure)."""
    profile, stack, options = key
    Lab.create(name, profile=profile, stack=stack, **json.loads(options)).up()


if __name__ == "__main__":
    profile, stack, options = json.loads(sys.argv[2])
    boot(sys.argv[1], (profile, stack, options))
