"""Freezing a docker node when runc gives up on the freezer: the lab asks the freezer itself."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from lab.docker_backend import DockerBackend


class FakeCgroup:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def freeze(self, wait: bool = True, timeout: float = 5.0) -> None:
        self.asked.append({"wait": wait, "timeout": timeout})


def backend_whose_pause_fails(monkeypatch: pytest.MonkeyPatch, message: str) -> DockerBackend:
    def pause(_self: DockerBackend, _node: Any, verb: str) -> None:
        assert verb == "pause"
        raise docker.errors.APIError(message)
    monkeypatch.setattr(DockerBackend, "_call", pause)
    return DockerBackend.__new__(DockerBackend)


RUNC = ("500 Server Error: Cannot pause container a56f: OCI runtime pause failed: unable to "
        "freeze: unknown")


def test_runc_unable_to_freeze_falls_back_to_the_freezer(monkeypatch: pytest.MonkeyPatch) -> None:
    cgroup = FakeCgroup()
    backend = backend_whose_pause_fails(monkeypatch, RUNC)
    backend.freeze(SimpleNamespace(name="lsvm2", cgroup=cgroup))  # type: ignore[arg-type]
    assert cgroup.asked == [{"wait": True, "timeout": 5.0}]


def test_any_other_pause_failure_is_a_failed_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    cgroup = FakeCgroup()
    backend = backend_whose_pause_fails(monkeypatch, "404 Client Error: No such container")
    with pytest.raises(TimeoutError, match="docker pause failed: 404"):
        backend.freeze(SimpleNamespace(name="lsvm2", cgroup=cgroup))  # type: ignore[arg-type]
    assert cgroup.asked == []
