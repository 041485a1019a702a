"""The Docker engine the docker backend talks to: the lab's own, unless one is named.

With $HAPAIR_DOCKER_HOST set (e.g. ``unix:///var/run/docker.sock``) the lab uses that engine
and never starts or stops it. Otherwise it uses its own daemon, started on first use and shared
by every docker lab on the machine (images live in one data root, so one daemon at a time):

- its own data root (``/var/lib/hapair-lab/docker``), socket, pidfile and exec root under
  ``/run/hapair-lab``; no bridge, no iptables or ip6tables rules, no forwarding or masquerade,
  so the root namespace gets no link, address, route or firewall rule from it;
- run in a private mount namespace, so its overlay, shm and netns mounts never appear in the
  root namespace (the lab promises the root namespace exactly as it was);
- recorded by PID and start time in ``/run/hapair-lab/dockerd.json``, and stopped only by that
  record (`stop`), never by a process name.

The storage driver is the daemon's own choice (overlay2 where the kernel has it, then
fuse-overlayfs, then vfs); `info()` says which.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.cgroup import DEFAULT_STATE_ROOT
from lab.state import ProcessRef

RUN_DIR = Path("/run/hapair-lab")
SOCKET = RUN_DIR / "docker.sock"
RECORD = RUN_DIR / "dockerd.json"
LOCK = RUN_DIR / "dockerd.lock"
LOG = RUN_DIR / "dockerd.log"
DATA_ROOT = Path(DEFAULT_STATE_ROOT) / "docker"
START_TIMEOUT_S = 60.0
LABEL_LAB = "org.hapair-lab.lab"


class DockerUnavailable(RuntimeError):
    """No Docker engine can be reached or started (the message says why)."""


def external_host() -> str | None:
    return os.environ.get("HAPAIR_DOCKER_HOST") or None


def base_url() -> str:
    return external_host() or f"unix://{SOCKET}"


def dockerd_argv() -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "--",
            "dockerd", "--data-root", str(DATA_ROOT), "--exec-root", str(RUN_DIR / "exec"),
            "--pidfile", str(RUN_DIR / "docker.pid"), "-H", f"unix://{SOCKET}",
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
            "--ip-masq=false"]


def client(timeout: float = 120.0) -> Any:
    """A docker SDK client for the engine; starts the lab's own daemon if needed."""
    import docker
    ensure()
    return docker.DockerClient(base_url=base_url(), timeout=int(timeout))


def _ping(timeout: float = 2.0) -> bool:
    import docker
    try:
        with contextlib.closing(docker.DockerClient(base_url=base_url(),
                                                    timeout=int(timeout))) as c:
            return bool(c.ping())
    except Exception:
        return False


def running() -> ProcessRef | None:
    """The lab's own daemon, if its record names a live process."""
    try:
        data = json.loads(RECORD.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    ref = ProcessRef(int(data["pid"]), int(data["start"]))
    return ref if ref.alive() and not ref.exited() else None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure() -> str:
    """Make sure an engine answers; returns how ("external", "running", "started")."""
    if external_host():
        if not _ping():
            raise DockerUnavailable(f"HAPAIR_DOCKER_HOST={external_host()} does not answer")
        return "external"
    with _locked():
        if running() is not None and _ping():
            return "running"
        if running() is not None:
            # alive but not answering yet: another `lab` just started it
            _wait_answering(running())
            return "running"
        if shutil.which("dockerd") is None:
            raise DockerUnavailable("dockerd is not installed (make setup BACKEND=docker "
                                    "installs Debian's docker.io)")
        DATA_ROOT.mkdir(parents=True, exist_ok=True, mode=0o710)
        log = open(LOG, "ab")  # noqa: SIM115 -- handed to the daemon
        try:
            popen = subprocess.Popen(dockerd_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True, cwd="/")
        finally:
            log.close()
        ref = ProcessRef.of(popen.pid)  # unshare execs dockerd: the same process
        tmp = RECORD.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": ref.pid, "start": ref.start,
                                   "argv": dockerd_argv(), "started": time.time()}))
        os.replace(tmp, RECORD)
        _wait_answering(ref)
        return "started"


def _wait_answering(ref: ProcessRef | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _ping():
            return
        if ref is None or ref.exited():
            break
        time.sleep(0.1)
    tail = LOG.read_text(errors="replace")[-1500:] if LOG.exists() else ""
    raise DockerUnavailable(f"the lab's dockerd did not answer on {SOCKET}: {tail.strip()}")


def stop(timeout: float = 30.0) -> str:
    """Stop the lab's own daemon by its record; refused while any lab's container exists."""
    if external_host():
        return "external engine: not ours to stop"
    with _locked():
        ref = running()
        if ref is None:
            RECORD.unlink(missing_ok=True)
            return "not running"
        if _ping():
            import docker
            with contextlib.closing(docker.DockerClient(base_url=base_url())) as c:
                left = c.containers.list(all=True, filters={"label": LABEL_LAB})
            if left:
                labs = sorted({ct.labels.get(LABEL_LAB, "?") for ct in left})
                raise DockerUnavailable(f"{len(left)} lab containers still exist (labs: "
                                        f"{', '.join(labs)}): `lab down` them first")
        ref.kill(15)
        deadline = time.monotonic() + timeout
        while not ref.exited() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(ref.pid, os.WNOHANG)
            time.sleep(0.1)
        if not ref.exited():
            ref.kill()
        RECORD.unlink(missing_ok=True)
        return f"stopped dockerd {ref.pid}"


def info() -> dict[str, Any]:
    """What `lab doctor` shows: who runs the engine, its version and storage driver."""
    who = "external" if external_host() else ("lab's own" if running() else "not running")
    if not external_host() and running() is None:
        return {"engine": who, "installed": shutil.which("dockerd") is not None}
    import docker
    with contextlib.closing(docker.DockerClient(base_url=base_url(), timeout=10)) as c:
        data = c.info()
    return {"engine": who, "installed": True, "version": data.get("ServerVersion"),
            "storage_driver": data.get("Driver"), "cgroup": data.get("CgroupVersion"),
            "data_root": data.get("DockerRootDir")}
