"""Host-side entry points for the lab: put the replicated disk on a node, start, stop, ask.

Why here and not in the stack: everything that knows how the DRBD substitute is wired (the
wrapper installed as the node's ``drbdadm``, where the backing image lives, the device node the
``.res`` names as ``disk``) stays in one place, and the stack only calls ``start``/``stop``/
``status``. Where the kernel has DRBD (``/proc/drbd``) the node keeps the real ``drbdadm`` and
the backing disk is a loop device over the same image (the "real DRBD" path, untested here).

Backing image: ``<lab>/nodes/<node>/replicator/<resource>.img`` on the host (it survives
crashes like a disk does); the ``.res`` ``disk`` path (the seed's ``/dev/mapper/lsvmN--vg2-drbd0``)
is made inside the node's private ``/dev`` as a symlink to it at every boot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.replicator.handshake import UUID_JUST_CREATED
from lab.replicator.metadata import Metadata, MetadataError, data_size_for
from lab.replicator.resfile import Resource, load_dir
from lab.replicator.wire import recv_line

if TYPE_CHECKING:
    from lab.node import Node

DEFAULT_SIZE = 250 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def real_drbd() -> bool:
    """The kernel has DRBD: use it, not the substitute."""
    return Path("/proc/drbd").exists()


def mode() -> str:
    return "drbd-kernel" if real_drbd() else "userspace-replicator"


def wrapper_text(records: str | None, image_sync: bool = True,
                 python: str = sys.executable) -> str:
    lines = [
        "#!/bin/sh",
        "# hapair-lab: DRBD-8.4-compatible drbdadm over the userspace replicator "
        "(lab/replicator)",
        f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
    ]
    if records:
        lines.append(f"export HAPAIR_LAB_RECORDS={records}")
    if not image_sync:  # see disk.LocalDisk.image_sync
        lines.append("export HAPAIR_REPL_IMAGE_SYNC=0")
    lines.append(f'exec {python} -m lab.replicator.drbdadm "$@"')
    return "\n".join(lines) + "\n"


def resource(node: Node, name: str = "drbd0") -> Resource:
    return load_dir(node.path("/etc/drbd.d"))[name]


def image_path(node: Node, name: str = "drbd0") -> Path:
    return node.dir / "replicator" / f"{name}.img"


def install(node: Node, image_sync: bool = True) -> None:
    """Make the node's private ``/usr/sbin/drbdadm`` (= ``/sbin/drbdadm``) our wrapper.

    ``image_sync=False``: flushes do not fdatasync the backing images (see
    ``disk.LocalDisk.image_sync``) -- the lab's faults never lose the host's page cache.
    """
    if real_drbd():
        return
    target = node.path("/usr/sbin/drbdadm")
    records = str(node.lab.records.path)
    text = wrapper_text(records, image_sync, node.python)
    if not target.exists() or target.read_bytes() != text.encode():
        # in place, never rename: the node sees this file through a bind mount of its inode
        with open(target, "wb") as f:
            f.write(text.encode())
        os.chmod(target, 0o755)


def ensure_image(node: Node, name: str = "drbd0", size: int = DEFAULT_SIZE) -> Path:
    img = image_path(node, name)
    img.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not img.exists():
        fd = os.open(img, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
    return img


def template_path(root: Path, size: int = DEFAULT_SIZE) -> Path:
    """Where this machine keeps its formatted, UpToDate image of `size` bytes (one per size and
    per mkfs.ext4 build, so an upgraded e2fsprogs makes a new one)."""
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    stamp = int(os.stat(mkfs).st_mtime)
    return root / f"drbd-ext4-{size}-{stamp}.img"


def make_template(path: Path, size: int = DEFAULT_SIZE) -> Path:
    """Make `path` once per machine: ext4 over the data area (`mkfs.ext4 -q -F`, as the seed's
    bootstrap runs it on /dev/drbd0, whose size is the data area), internal metadata after
    it, disk UpToDate. Built aside and renamed into place, so two labs making it at once
    both end up with a whole one (two threads too)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.truncate(data_size_for(size))
        subprocess.run(["mkfs.ext4", "-q", "-F", str(tmp)], check=True, capture_output=True)
        os.truncate(tmp, size)
        fd = os.open(tmp, os.O_RDWR)
        try:
            md = Metadata.create(fd, size)
            md.set_disk("UpToDate")
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy `src` to a new `dst` data extent by data extent: holes stay holes (a 250 MiB image
    with a fresh ext4 holds ~10 MiB of data)."""
    fd_in = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd_in).st_size
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd_out, size)
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(fd_in, offset, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                end = os.lseek(fd_in, start, os.SEEK_HOLE)
                while start < end:
                    copied = os.copy_file_range(fd_in, fd_out, end - start, start, start)
                    if copied <= 0:
                        raise OSError(f"copy_file_range stopped at {start} of {src}")
                    start += copied
                offset = end
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def seed_image(node: Node, generation: int, name: str = "drbd0", size: int = DEFAULT_SIZE,
               templates: Path | None = None) -> bool:
    """Give a node that has no image yet a copy of this machine's formatted, UpToDate
    template, stamped with the pair's `generation` (the same current UUID on both sides, so
    they connect UpToDate/UpToDate with nothing to resync, as a pair does after its initial
    sync). Returns False (and changes nothing) if the node has an image already, or where
    the kernel has DRBD. Why: the seed's one-time bootstrap -- a full initial sync and mkfs --
    costs seconds per lab and says nothing a scenario measures; the daemon then starts as on
    any later boot."""
    img = image_path(node, name)
    if real_drbd() or img.exists():
        return False
    if generation & ~1 in (0, UUID_JUST_CREATED):
        raise ValueError(f"generation {generation:#x} is not a generation UUID")
    from lab.state import lab_root
    template = make_template(template_path(templates or lab_root() / "templates", size), size)
    img.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = img.with_name(f".{img.name}.tmp")
    tmp.unlink(missing_ok=True)
    sparse_copy(template, tmp)
    fd = os.open(tmp, os.O_RDWR)
    try:
        md = Metadata.load(fd, size)
        md.set_uuids(current=generation & ~1, bitmap=0, history=(0, 0))
    finally:
        os.close(fd)
    os.replace(tmp, img)
    return True


def has_metadata(img: Path) -> bool:
    fd = os.open(img, os.O_RDONLY)
    try:
        Metadata.load(fd, os.fstat(fd).st_size)
        return True
    except MetadataError:
        return False
    finally:
        os.close(fd)


def plug_disk(node: Node, name: str = "drbd0", size: int = DEFAULT_SIZE) -> Resource:
    """Install drbdadm, create the image, link the ``.res`` disk path to it, create-md once."""
    install(node)
    res = resource(node, name)
    img = ensure_image(node, name, size)
    disk = res.host(node.name).disk
    if real_drbd():
        dev = node.succeed(f"losetup -j {img} | cut -d: -f1 | head -1").strip()
        if not dev:
            dev = node.succeed(f"losetup --find --show {img}").strip()
            node.lab.records.add("loop", device=dev, backing=str(img), node=node.name,
                                 resource=name)
        node.succeed(f"mkdir -p {os.path.dirname(disk)} && ln -sfn {dev} {disk}")
    else:
        node.succeed(f"mkdir -p {os.path.dirname(disk)} && ln -sfn {img} {disk}")
    if real_drbd():
        # the real drbdmeta asks before overwriting; a fresh image has nothing to keep
        node.execute(f"drbdadm dump-md {name} >/dev/null 2>&1 || "
                     f"echo yes | drbdadm create-md {name}")
    elif not has_metadata(img):
        node.succeed(f"drbdadm create-md {name}")
    return res


def start(node: Node, name: str = "drbd0", size: int = DEFAULT_SIZE) -> None:
    """At node boot: plug the disk and ``drbdadm up`` (attach + connect), as DRBD's init does."""
    after_crash(node, name)
    plug_disk(node, name, size)
    rc, out = node.execute(f"drbdadm up {name}", timeout=60)
    if rc != 0 and "exists already" not in out:
        raise RuntimeError(f"{node.name}: drbdadm up {name} failed ({rc}): {out}")


def stop(node: Node, name: str = "drbd0") -> None:
    """At node halt: ``drbdadm down`` (fails if the device is still Primary and in use)."""
    node.execute(f"drbdadm down {name}", timeout=60)


def stale_loops(node: Node, name: str = "drbd0") -> list[str]:
    """Loop devices this node's daemon attached that still point at a FUSE file whose mount
    died with the node (their backing file then reads ``/<file name>``)."""
    out = []
    for entry in node.lab.records.entries("loop"):
        if entry.get("node") != node.name or entry.get("resource") != name:
            continue
        dev = str(entry["device"])
        try:
            current = Path(f"/sys/block/{Path(dev).name}/loop/backing_file").read_text().strip()
        except FileNotFoundError:
            continue
        recorded = str(entry.get("backing", ""))
        if current == "/" + os.path.basename(recorded):
            out.append(dev)
    return out


def after_crash(node: Node, name: str = "drbd0") -> None:
    """Only the image survives a crash; detach the dead loop devices the node left behind."""
    for dev in stale_loops(node, name):
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def _ctl_path(node: Node, name: str) -> str:
    return f"/proc/{node.init_pid}/root/run/drbd/{name}.ctl"


def control(node: Node, request: dict[str, Any], name: str = "drbd0",
            timeout: float = 30.0) -> dict[str, Any] | None:
    """Talk to a node's daemon straight through ``/proc/PID/root`` (no process spawned)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(_ctl_path(node, name))
    except OSError:
        s.close()
        return None
    with s:
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = recv_line(s)
    return json.loads(buf) if buf else None


def full_status(node: Node, name: str = "drbd0") -> dict[str, Any] | None:
    """The daemon's whole state (or, with kernel DRBD, what drbdadm and /proc/drbd say)."""
    if real_drbd():
        return kernel_status(node, name)
    try:
        reply = control(node, {"cmd": "status"}, name, timeout=5)
    except (OSError, ValueError):
        return None
    return reply["state"] if reply else None


def kernel_status(node: Node, name: str = "drbd0") -> dict[str, Any] | None:
    """The same keys read from the real drbdadm (kernel DRBD), oos from /proc/drbd."""
    rc, out = node.execute(f"drbdadm role {name} && drbdadm cstate {name} && "
                           f"drbdadm dstate {name}")
    lines = out.split()
    if rc != 0 or len(lines) < 3:
        return None
    minor = resource(node, name).host(node.name).minor
    oos = None
    rc, proc = node.execute("cat /proc/drbd")
    for line in proc.splitlines() if rc == 0 else []:
        if line.strip().startswith(f"{minor}:"):
            oos = None
        if "oos:" in line:
            oos = int(line.split("oos:")[1].split()[0])
    return {"role": lines[0].split("/")[0], "peer_role": lines[0].partition("/")[2],
            "cstate": lines[1], "dstate": lines[2].split("/")[0],
            "pdsk": lines[2].partition("/")[2], "out_of_sync_kib": oos}


def status(node: Node, name: str = "drbd0") -> dict[str, Any]:
    """``{"role", "cstate", "dstate", "out_of_sync_kib"}`` for ``lab status --json``."""
    st: dict[str, Any] | None = None
    if node.state == "running":
        st = kernel_status(node, name) if real_drbd() else full_status(node, name)
    if st is None:
        return {"role": "Unconfigured", "cstate": "Unconfigured", "dstate": "Unconfigured",
                "out_of_sync_kib": None}
    return {k: st[k] for k in ("role", "cstate", "dstate", "out_of_sync_kib")}


def wait_for(node: Node, predicate: Any, name: str = "drbd0", timeout: float = 60.0,
             what: str = "") -> dict[str, Any]:
    """Poll the daemon's state until ``predicate(state)``; returns that state."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        st = full_status(node, name)
        if st is not None and predicate(st):
            return st
        time.sleep(0.05)
    raise TimeoutError(f"{node.name}: {what or 'replicator state'} not reached in {timeout} s; "
                       f"last state {st}")


def wait_connected(node: Node, name: str = "drbd0", timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(node, lambda s: s["cstate"] == "Connected" and s["pdsk"] == "UpToDate"
                    and s["dstate"] == "UpToDate", name, timeout, "Connected UpToDate/UpToDate")


def bootstrap(primary: Node, secondary: Node, name: str = "drbd0", fs: bool = True,
              timeout: float = 120.0) -> None:
    """The seed's first start: overwrite the peer from ``primary`` and make the filesystem.

    ``drbdadm -- --overwrite-data-of-peer primary all`` on the primary, then (like the seed)
    ``mkfs.ext4 /dev/drbd0`` -- the initial sync runs underneath -- and leave it Secondary.
    """
    for node in (primary, secondary):
        wait_for(node, lambda s: s["cstate"] in ("Connected", "SyncSource", "SyncTarget"),
                 name, timeout, "connected")
    primary.succeed(f"drbdadm -- --overwrite-data-of-peer primary {name}")
    dev = resource(primary, name).host(primary.name).device
    if fs:
        primary.succeed(f"mkfs.ext4 -q -F {dev}", timeout=timeout)
    wait_connected(primary, name, timeout)
    primary.succeed(f"drbdadm secondary {name}")


SEED_RES = REPO / "fixtures" / "seed" / "drbd0.res"


def seed_resource_text(secret: str, net_extra: str = "") -> str:
    """The seed's ``drbd0.res`` (fixtures/seed) with a real shared secret in place of the
    placeholder, plus optional ``net`` options (e.g. a shorter ``ping-int`` for tests)."""
    text = SEED_RES.read_text().replace("SOME_PASSWORD_STRING", secret)
    if net_extra:
        text = text.replace("net {\n", "net {\n" + net_extra + "\n", 1)
    return text


def write_resource(node: Node, text: str, name: str = "drbd0") -> None:
    """Put a resource file on a node, mode 640 like the seed says (it holds the secret)."""
    path = node.path(f"/etc/drbd.d/{name}.res")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o640)
