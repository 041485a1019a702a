"""The container backend: how a node's namespaces are made, entered and destroyed.

A node is one `unshare` process whose child -- PID 1 of fresh net, mount, UTS, IPC and PID
namespaces -- sets the node up (lab/container_init.py) and becomes tini. Nothing is named in the
root namespace: no `ip netns` bind mounts, which a later node's mount namespace would copy and
thereby keep another node's network alive after it "lost power". The namespaces live exactly as
long as the node's processes; a crash that kills them takes the node's whole kernel network
state (addresses, VIPs, neighbour caches) with it, as a power cut does.
Commands run inside with `nsenter`, the way the NixOS test driver's nspawn backend does, after
the spawning process has put itself into the node's cgroup.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lab.cgroup import Cgroup
from lab.wait import WaitTimeout, wait_for

PERSISTENT_DIRS = (
    # (path inside the node, start as a copy of the host's?)
    ("/etc/ha.d", True),
    ("/etc/dnsmasq.d", False),
    ("/etc/default", True),
    ("/etc/drbd.d", True),
    ("/var/lib/heartbeat", True),
    ("/var/lib/misc", False),
    ("/var/lib/dhcp", False),
    ("/var/log", False),
    ("/var/cache/ddclient", False),
    ("/srv", False),
    # first on a node's PATH: the lab's power shims (reboot, poweroff), see lab/power.py
    ("/usr/local/sbin", True),
)
PERSISTENT_FILES = (
    ("/etc/dnsmasq.conf", True),
    ("/etc/ddclient.conf", True),
    ("/usr/sbin/drbdadm", True),
    # written by the lab, never copied: a node must not learn the host's resolver or names
    ("/etc/resolv.conf", False),
    ("/etc/hosts", False),
)
VOLATILE_DIRS = ("/run", "/tmp")
RUN_DIRS = ("/run/lock", "/run/sendsigs.omit.d")

NSENTER_NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid")
NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": os.environ.get("TERM", "xterm"),
}


class ContainerError(RuntimeError):
    pass


@dataclass
class ContainerSpec:
    """Everything needed to start one node container; pure data, serialisable to the init."""

    hostname: str
    fs_root: Path  # host directory holding the node's persistent files, mirrored by path
    console: Path  # where PID 1's own output goes
    cgroup: Cgroup
    sysctls: dict[str, str] = field(default_factory=dict)
    private: bool = True  # False for the switch: it needs a network namespace and nothing else
    source_root: Path = Path("/")  # where persistent files are first copied from

    def host_path(self, container_path: str) -> Path:
        return self.fs_root / container_path.lstrip("/")

    def source(self, container_path: str) -> Path:
        """Where the node's file at `container_path` is first copied from: the host's own
        (the namespace backend) or an image's files exported to a directory (docker)."""
        return self.source_root / container_path.lstrip("/")

    def populate(self) -> None:
        """Create the node's persistent files on first use (they survive crashes and reboots)."""
        for path, copy in PERSISTENT_DIRS:
            target = self.host_path(path)
            source = self.source(path)
            if target.exists() or not source.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                copy_preserving(str(source), str(target))
            else:
                target.mkdir(mode=0o755)
                shutil.copystat(source, target)
        for path, copy in PERSISTENT_FILES:
            target = self.host_path(path)
            source = self.source(path)
            if target.exists() or not source.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                copy_preserving(str(resolve_within(self.source_root, source)), str(target))
            else:
                target.write_text(default_file_content(path, self.hostname))
                target.chmod(0o644)

    def binds(self) -> list[tuple[str, str]]:
        """(host path, node path) of every persistent file or directory the node has."""
        binds = []
        for path, _ in PERSISTENT_DIRS + PERSISTENT_FILES:
            if self.host_path(path).exists() and self.source(path).exists():
                binds.append((str(self.host_path(path)), path))
        return binds

    def init_argument(self) -> str:
        """`init_spec()` as one command-line word for lab/container_init.py (marshal: built
        into the interpreter, so the init imports nothing to read it)."""
        return marshal.dumps(self.init_spec()).hex()

    def init_spec(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "binds": self.binds() if self.private else [],
            "tmpfs": list(VOLATILE_DIRS) if self.private else [],
            "keep": kept_host_dirs() if self.private else [],
            "mkdirs": list(RUN_DIRS) if self.private else [],
            "sysctls": self.sysctls,
            "console": str(self.console),
            "tini": shutil.which("tini") or "/usr/bin/tini",
        }


def copy_preserving(src: str, dst: str) -> None:
    """Copy a file or a whole tree the way `cp -a` does: symbolic links as links, FIFOs and
    device nodes as such, owner, mode and times kept. In-process, because a node's persistent
    files are a few dozen small files and a `cp` per directory cost more than the copying."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        with os.scandir(src) as entries:
            for entry in entries:
                copy_preserving(entry.path, os.path.join(dst, entry.name))
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:
        os.mknod(dst, st.st_mode, st.st_rdev)
    # owner before mode (chown clears set-id bits); a link has no mode of its own
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def resolve_within(root: Path, path: Path) -> Path:
    """`path` (below `root`) with its symbolic links followed as if `root` were `/`: an image's
    absolute link must not lead to the host's file of that name."""
    if root == Path("/"):
        return Path(os.path.realpath(path))
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise ContainerError(f"{path}: too many levels of symbolic links")


def kept_host_dirs() -> list[str]:
    """The lab's code and interpreter, where they lie below a node's volatile dirs (a checkout
    in /tmp, say): nodes run `python -m lab...` and must see them."""
    candidates = {Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve(),
                  Path(sys.base_prefix).resolve()}
    volatile = [Path(v) for v in VOLATILE_DIRS]
    hidden = {p for p in candidates if any(v == p or v in p.parents for v in volatile)}
    # a directory inside another kept one comes along with it
    return sorted(str(p) for p in hidden if not any(q in p.parents for q in hidden))


def default_file_content(path: str, hostname: str) -> str:
    if path == "/etc/hosts":
        return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n"
    if path == "/etc/resolv.conf":
        return "# hapair-lab: no resolver until the lab's services configure one\n"
    return ""


@dataclass
class Running:
    """A started container: the `unshare` parent and the node's PID 1 (both host PIDs). A
    backend whose PID 1 has no such parent of ours gives PID 1 for both, and may name its
    container and the cgroup that holds it."""

    unshare_pid: int
    init_pid: int
    popen: subprocess.Popen[bytes] | None = None
    container: str | None = None
    cgroup: str | None = None

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.init_pid}/ns/net"


@dataclass
class Launch:
    """A container whose `unshare` has been started but whose PID 1 may still be setting up:
    several nodes boot side by side this way, each `ready()` collected afterwards."""

    spec: ContainerSpec
    popen: subprocess.Popen[bytes]
    started_mono: float
    ready_mono: float | None = None
    _running: Running | None = None

    def ready(self, timeout: float = 10.0) -> Running:
        """Wait until PID 1 has set everything up; the container's two host PIDs (asked
        again, the same answer)."""
        if self._running is None:
            self._running = self._wait_ready(timeout)
            self.ready_mono = time.monotonic()
        return self._running

    def _wait_ready(self, timeout: float) -> Running:
        assert self.popen.stdout is not None
        line = _read_line(self.popen.stdout, timeout)
        self.popen.stdout.close()
        if line != b"ready\n":
            self.popen.kill()
            self.popen.wait()
            console = self.spec.console
            detail = console.read_text(errors="replace")[-2000:] if console.exists() else ""
            raise ContainerError(f"container {self.spec.hostname} did not start: "
                                 f"{detail.strip()}")
        init_pid = _child_of(self.popen.pid, timeout)
        return Running(self.popen.pid, init_pid, self.popen)


def launch(spec: ContainerSpec) -> Launch:
    """Start the container's `unshare` (already in the node's cgroup) and return at once."""
    spec.cgroup.create()
    spec.console.parent.mkdir(parents=True, exist_ok=True)
    if spec.private:
        spec.populate()
    flags = ["--net", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
             "--propagation", "private"]
    # -S: no site (the init needs only the standard library and lab/container_init.py, which
    # PYTHONPATH names), so the node's PID 1 is ready a good 10 ms sooner
    argv = ["unshare", *flags, "--", sys.executable, "-S", "-m", "lab.container_init",
            spec.init_argument()]
    console = open(spec.console, "ab")  # noqa: SIM115 -- handed to the child
    try:
        popen = subprocess.Popen(spec.cgroup.entered(argv), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=console,
                                 start_new_session=True, env=_init_env(), cwd="/")
    finally:
        console.close()
    return Launch(spec, popen, time.monotonic())


def start(spec: ContainerSpec, timeout: float = 10.0) -> Running:
    """Start the container and wait until its PID 1 has set everything up."""
    return launch(spec).ready(timeout)


def _init_env() -> dict[str, str]:
    env = dict(NODE_ENV)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data


def _child_of(pid: int, timeout: float) -> int:
    """The PID of `unshare`'s forked child (the node's init), polled every 2 ms: a node start
    waits on it."""
    path = Path(f"/proc/{pid}/task/{pid}/children")

    def children() -> list[str] | None:
        try:
            return path.read_text().split()
        except FileNotFoundError:  # unshare is gone: no child will come
            return None
    try:
        found = wait_for(children, until=lambda c: c is None or bool(c), timeout=timeout,
                         interval=0.002, max_interval=0.002, what=f"unshare {pid}'s child")
    except WaitTimeout:
        found = None
    if not found:
        raise ContainerError(f"unshare {pid} has no child")
    return int(found[0])


def exec_argv(init_pid: int, argv: Sequence[str]) -> list[str]:
    """The host command line that runs `argv` inside the node whose PID 1 is `init_pid`.

    Entering the mount namespace puts the command at that namespace's root, which is what it
    should start in. No `--wd=/`: nsenter opens that path before entering, i.e. the host's
    root, which a container with a root of its own (the docker backend) cannot reach."""
    return ["nsenter", "--target", str(init_pid), *NSENTER_NAMESPACES, "--", *argv]


def popen_in(init_pid: int, cgroup: Cgroup, argv: Sequence[str], **kwargs: Any
             ) -> subprocess.Popen[Any]:
    """Start `argv` inside the node, in its cgroup (so freeze/crash reach it too)."""
    kwargs.setdefault("env", dict(NODE_ENV))
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(cgroup.entered(exec_argv(init_pid, argv)), **kwargs)


def run_in(init_pid: int, cgroup: Cgroup, argv: Sequence[str], timeout: float | None,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    popen = popen_in(init_pid, cgroup, argv, stdin=subprocess.PIPE if input is not None
                     else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True, start_new_session=True)
    try:
        out, _ = popen.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(popen)
        raise subprocess.TimeoutExpired(popen.args, timeout or 0,
                                        output=_output_after_kill(popen)) from None
    return subprocess.CompletedProcess(popen.args, popen.returncode, out, None)


def _output_after_kill(popen: subprocess.Popen[str], grace: float = 2.0) -> str:
    """What a killed command wrote, waiting at most `grace` seconds for it to die: in a node
    frozen meanwhile its SIGKILL takes effect only on thaw, and until then it holds its pipes
    open, so waiting for their end would last as long as the freeze."""
    try:
        out, _ = popen.communicate(timeout=grace)
    except subprocess.TimeoutExpired as exc:
        for stream in (popen.stdin, popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        partial = exc.output
        return partial.decode(errors="replace") if isinstance(partial, bytes) else ""
    return out or ""


def _kill_group(popen: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, 9)
