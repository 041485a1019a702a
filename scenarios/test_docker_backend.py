"""The docker backend: nodes are containers from a node image, and the lab around them is the
same. Skipped where no Docker engine can run or no node image was built (`lab image build`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lab.lab import Lab
from lab.node import Node
from lab.pytest_plugin import LabFactory

pytestmark = pytest.mark.lab
IMAGE = os.environ.get("LAB_IMAGE") or "hapair-node:bookworm"


@pytest.fixture(scope="module", autouse=True)
def _docker_image() -> None:
    if shutil.which("dockerd") is None and not os.environ.get("HAPAIR_DOCKER_HOST"):
        pytest.skip("no Docker engine here (make setup BACKEND=docker)")
    import docker.errors

    from lab import dockerd
    client = dockerd.client()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"no node image {IMAGE} (lab image build)")
    finally:
        client.close()


def daemon_pids(node: Node, needle: str) -> list[int]:
    return [pid for pid, cmd in node.processes() if needle in cmd.split(" ", 1)[0]]


def same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


@pytest.mark.seed
def test_daemons_run_from_the_image(lab_factory: LabFactory) -> None:
    """Every daemon's executable is the image's file (the container's root), not the host's:
    /proc/PID/exe is the same inode as /proc/PID/root/<its path>, and another than the
    host's file of that name."""
    lab = lab_factory(stack="seed", backend="docker", image=IMAGE)
    lab.wait_healthy(timeout=120)
    status = lab.status()
    assert (status["backend"], status["image"]) == ("docker", IMAGE)
    assert all(n.get("container") for n in status["nodes"].values())
    checked: dict[str, str] = {}
    for node in lab.with_role("server"):
        for needle in ("heartbeat", "dnsmasq", "python3"):
            for pid in daemon_pids(node, needle):
                exe = Path(f"/proc/{pid}/exe")
                inside = os.readlink(exe)
                in_image = Path(f"/proc/{pid}/root") / inside.lstrip("/")
                assert same_file(exe, in_image), f"{node.name} {needle} {pid}: {inside}"
                if Path(inside).exists():
                    assert not same_file(exe, Path(inside)), (
                        f"{node.name} {needle} {pid} runs the host's {inside}")
                checked[f"{node.name}:{needle}"] = inside
    assert {"lsvm1:heartbeat", "lsvm2:heartbeat"} <= checked.keys(), checked
    assert any(k.endswith(":dnsmasq") for k in checked), checked
    active = lab.active()
    version = active.succeed("dnsmasq --version").splitlines()[0]
    assert version.startswith("Dnsmasq version"), version


def test_crash_freeze_and_down_by_records(lab_factory: LabFactory) -> None:
    """Power loss removes the container (the volume stays, so do the node's files); a new
    container comes back at start; freeze is Docker's pause; down removes what was recorded."""
    import docker.errors

    from lab import dockerd
    lab: Lab = lab_factory(backend="docker", image=IMAGE)
    node = lab.lsvm1
    node.path("/srv/kept").write_text("survives power loss\n")
    before = node.runtime
    assert before is not None and before.container
    node.freeze()
    client = dockerd.client()
    try:
        assert client.containers.get(before.container).status == "paused"
        node.thaw()
        assert client.containers.get(before.container).status == "running"
        node.crash()
        assert node.state == "stopped"
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(before.container)
        node.start()
        after = node.runtime
        assert after is not None and after.container != before.container
        assert node.succeed("cat /srv/kept") == "survives power loss\n"
        volumes = [e["name"] for e in lab.records.entries("docker_volume")]
        containers = {e.get("id") for e in lab.records.entries("docker_container")} - {None}
        assert len(volumes) == len(lab.nodes)
        lab.down()
        for cid in containers:
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(cid)
        for name in volumes:
            with pytest.raises(docker.errors.NotFound):
                client.volumes.get(name)
    finally:
        client.close()


def test_testinfra_docker_url_agrees_with_the_lab_backend(lab_factory: LabFactory,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """testinfra's own docker:// backend and the lab's (nsenter) see the same node."""
    import testinfra

    from lab import dockerd
    lab = lab_factory(backend="docker", image=IMAGE)
    monkeypatch.setenv("DOCKER_HOST", dockerd.base_url())
    for node in (lab.lsvm1, lab.c1):
        runtime = node.runtime
        assert runtime is not None and runtime.container
        theirs = testinfra.get_host(f"docker://{runtime.container}")
        ours = node.host

        def answers(host: Any, iface: str) -> dict[str, Any]:
            return {
                "hostname": host.check_output("hostname"),
                "hosts": host.file("/etc/hosts").content_string,
                "dnsmasq": host.package("dnsmasq").version,
                "heartbeat": host.package("heartbeat").version,
                "codename": host.system_info.codename,
                "addresses": sorted(host.interface(iface).addresses),
                "drbdadm": host.file("/usr/sbin/drbdadm").exists,
                "python": host.check_output("python3 -c 'import lab, pyroute2; print(1)'"),
            }
        iface = next(i.name for i in node.spec.interfaces)
        assert answers(theirs, iface) == answers(ours, iface), node.name


def test_down_all_elsewhere_keeps_the_engine_a_process_uses(tmp_path: Path) -> None:
    """`lab down --all` in another lab root finds no container of its own labs, yet the engine
    stays: this process has used it (and may be about to make containers), so stopping it
    would pull it from under a running lab or test run."""
    import subprocess
    import sys

    from lab import dockerd
    dockerd.ensure()
    engine = dockerd.running()
    down = subprocess.run([sys.executable, "-m", "lab.cli", "down", "--all"],
                          env={**os.environ, "HAPAIR_LAB_ROOT": str(tmp_path / "root")},
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    if engine is not None:  # the lab's own engine (an external one is never stopped)
        assert "keeps running: a running lab process uses it" in " ".join(down.stdout.split())
        assert dockerd.running() == engine
