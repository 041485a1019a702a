"""PID 1 of a node container, for the few milliseconds before it becomes `tini`.

It runs inside the fresh namespaces that `unshare` made (mount propagation already private), so
every mount below is invisible to the host and to other nodes. It gives the node its hostname,
its private persistent directories and files (bind mounts from the lab's state directory), fresh
tmpfs for /run and /tmp, a private /dev, a sysfs that shows the node's own interfaces, and the
node's sysctls; then it reports ``ready`` on stdout and execs tini, which reaps the orphans that
daemons leave behind (heartbeat forks a lot) for as long as the node lives.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import stat
import sys

# Only built-in modules and ctypes: this runs once per node start, in a fresh interpreter
# started with -S, and every import is on the path of a node coming up (typing alone costs
# ~15 ms, so it is imported for the type checker only).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)
STASH = "/dev/shm"  # a mount point that exists on the host and is not a node's private dir

# (name, kind, major, minor, mode): what a node's /dev needs; no disks, no host consoles.
DEVICES = [
    ("null", stat.S_IFCHR, 1, 3, 0o666),
    ("zero", stat.S_IFCHR, 1, 5, 0o666),
    ("full", stat.S_IFCHR, 1, 7, 0o666),
    ("random", stat.S_IFCHR, 1, 8, 0o666),
    ("urandom", stat.S_IFCHR, 1, 9, 0o666),
    ("tty", stat.S_IFCHR, 5, 0, 0o666),
    ("fuse", stat.S_IFCHR, 10, 229, 0o666),
    ("loop-control", stat.S_IFCHR, 10, 237, 0o660),
] + [(f"loop{i}", stat.S_IFBLK, 7, i, 0o660) for i in range(64)]


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target} ({fstype}): {os.strerror(err)}")


def build_dev() -> None:
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=16m")
    for name, kind, major, minor, mode in DEVICES:
        path = f"/dev/{name}"
        os.mknod(path, kind | mode, os.makedev(major, minor))
        os.chmod(path, mode)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):
        os.symlink(target, f"/dev/{name}")
    os.mkdir("/dev/pts")
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666")
    os.mkdir("/dev/shm")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sethostname {name}: {os.strerror(err)}")


def makedirs(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def apply(spec: dict[str, Any]) -> None:
    sethostname(spec["hostname"])
    # unshare already made propagation private; say it again so a mount here never leaks out
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for host_path, container_path in spec["binds"]:
        mount(host_path, container_path, None, MS_BIND)
    # host directories the node must still see although they lie below a directory that gets a
    # fresh tmpfs (the lab's own code and virtualenv, e.g. a checkout in /tmp): bind them aside
    # first, then back into place on top of the new tmpfs
    kept = []
    if spec.get("keep"):
        mount("tmpfs", STASH, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
        for i, path in enumerate(spec["keep"]):
            aside = f"{STASH}/{i}"
            os.mkdir(aside)
            mount(path, aside, None, MS_BIND | MS_REC)
            kept.append((aside, path))
    for path in spec["tmpfs"]:
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" if path == "/tmp"
              else "mode=755")
    for aside, path in kept:
        makedirs(path)
        mount(aside, path, None, MS_BIND | MS_REC)
    if kept:
        _libc.umount2(STASH.encode(), 2)  # MNT_DETACH: the binds above stay
    for path in spec.get("mkdirs", []):
        makedirs(path)
    build_dev()
    for key, value in spec.get("sysctls", {}).items():
        # keys are paths below /proc/sys: `sysctl` cannot name interfaces with a dot (enp2s1.3)
        with open(os.path.join("/proc/sys", key), "w") as f:
            f.write(str(value))


def main() -> None:
    spec = marshal.loads(bytes.fromhex(sys.argv[1]))
    apply(spec)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    console = os.open(spec["console"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(console, 1)
    os.dup2(console, 2)
    os.close(console)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.execv(spec["tini"], [spec["tini"], "-s", "--", "sleep", "infinity"])


if __name__ == "__main__":
    main()
