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
  record (`stop`), never by a process name;
- used under a shared lock (``dockerd.users.lock``) that every process which `ensure`d it holds
  until it exits, so `lab down --all` in one lab root never stops the daemon under a process
  that is making or driving containers (another root's labs, a pytest run, a pooled lab).

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
from lab.wait import WaitTimeout, wait_for

RUN_DIR = Path("/run/hapair-lab")
SOCKET = RUN_DIR / "docker.sock"
RECORD = RUN_DIR / "dockerd.json"
LOCK = RUN_DIR / "dockerd.lock"
USERS_LOCK = RUN_DIR / "dockerd.users.lock"
LOG = RUN_DIR / "dockerd.log"
DATA_ROOT = Path(DEFAULT_STATE_ROOT) / "docker"
START_TIMEOUT_S = 60.0
LABEL_LAB = "org.hapair-lab.lab"


class DockerUnavailable(RuntimeError):
    """No Docker engine can be reached or started (the message says why)."""


_users_fd: int | None = None  # this process's shared hold on USERS_LOCK, once it used the daemon


def _open_users_lock() -> int:
    return os.open(USERS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _hold_as_user() -> None:
    """Hold USERS_LOCK shared until this process exits (the kernel drops it then, whatever
    the way out). Called under `_locked`, so it never interleaves with `stop`'s check."""
    global _users_fd
    if _users_fd is None:
        fd = _open_users_lock()
        fcntl.flock(fd, fcntl.LOCK_SH)
        _users_fd = fd


def _release_as_user() -> None:
    global _users_fd
    if _users_fd is not None:
        os.close(_users_fd)
        _users_fd = None


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
            _hold_as_user()
            return "running"
        if running() is not None:
            # alive but not answering yet: another `lab` just started it
            _wait_answering(running())
            _hold_as_user()
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
        _hold_as_user()
        return "started"


def _wait_answering(ref: ProcessRef | None) -> None:
    """Until the daemon answers; at once if it died (its log's tail says why)."""
    def look() -> str:
        if _ping():
            return "answers"
        return "dead" if ref is None or ref.exited() else ""
    try:
        seen = wait_for(look, timeout=START_TIMEOUT_S, interval=0.1, max_interval=0.1,
                        what=f"the lab's dockerd to answer on {SOCKET}")
    except WaitTimeout:
        seen = "silent"
    if seen != "answers":
        tail = LOG.read_text(errors="replace")[-1500:] if LOG.exists() else ""
        raise DockerUnavailable(f"the lab's dockerd did not answer on {SOCKET} ({seen}): "
                                f"{tail.strip()}")


def stop(timeout: float = 30.0) -> str:
    """Stop the lab's own daemon by its record; refused while another process uses it or any
    lab's container exists."""
    if external_host():
        return "external engine: not ours to stop"
    with _locked():
        ref = running()
        if ref is None:
            RECORD.unlink(missing_ok=True)
            return "not running"
        _release_as_user()
        users = _open_users_lock()
        try:
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DockerUnavailable("a running lab process uses it (a `lab up` or a test "
                                        "run)") from None
            return _stop_locked(ref, timeout)
        finally:
            os.close(users)


def _stop_locked(ref: ProcessRef, timeout: float) -> str:
    """`stop` once no other process uses the daemon: refused while lab containers exist."""
    if _ping():
        import docker
        with contextlib.closing(docker.DockerClient(base_url=base_url())) as c:
            # the plain listing: the SDK's `containers.list` inspects each one and fails on
            # a container removed meanwhile by another root's `lab down`
            left = c.api.containers(all=True, filters={"label": LABEL_LAB})
        if left:
            labs = sorted({str((ct.get("Labels") or {}).get(LABEL_LAB, "?")) for ct in left})
            raise DockerUnavailable(f"{len(left)} lab containers still exist (labs: "
                                    f"{', '.join(labs)}): `lab down` them first")
    ref.kill(15)

    def exited() -> bool:
        with contextlib.suppress(ChildProcessError):  # our child only when we started it
            os.waitpid(ref.pid, os.WNOHANG)
        return ref.exited()
    try:
        wait_for(exited, timeout=timeout, interval=0.1, what=f"dockerd {ref.pid} to exit")
    except WaitTimeout:
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
