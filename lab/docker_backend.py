"""The docker backend: each node is a container made from a node image (lab/image), driven
through the docker SDK; the lab does the rest exactly as for the namespace backend.

A node's container has no network of Docker's (``network_mode=none``: only a loopback), so the
lab wires its veths into the container's network namespace (``/proc/<State.Pid>/ns/net``) the
way it wires a namespace node; commands enter it with `nsenter` as before. It gets the
capabilities and devices its daemons need and nothing more: NET_ADMIN and SYS_ADMIN (addresses,
nftables, mounts of the replicated disk), ``/dev/fuse``, ``/dev/loop-control`` and the loop
devices' major (the replicator makes its loop and ``/dev/drbd0`` nodes itself); no
``--privileged``. Its PID 1 is the image's tini.

What a node keeps across power cycles (the same persistent paths as a namespace node) lives in
one Docker volume per node, made on first use from the image's own files; the node's ``fs``
directory in the lab's state is a link to that volume's data, so every host-side reader and
writer of node files (the stack, the power agent) works unchanged. The lab's own code is
mounted read-only over the image's copy, so nodes always run the checkout's code; the checkout
and the lab's directory are also mounted at their host paths (node-side commands name files in
them by those paths, as they do in a namespace node).

Power loss is SIGKILL of every process of the container at once (the node's cgroup, frozen
first, as for any node), then the container is removed; the next start makes a new one from
the same image with the same volume. Freezing is Docker's pause (the same kernel freezer).
Everything is recorded before it is made (``docker_container`` by name, then by ID;
``docker_volume``) and `lab down` removes exactly those, never anything found by a name pattern.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import container, dockerd
from lab.backend import BackendError
from lab.cgroup import V1_ROOT, V2_ROOT, Cgroup
from lab.image import packages
from lab.image.rootfs import images_dir
from lab.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    from lab.lab import Lab
    from lab.node import Node

DEFAULT_IMAGE = f"{packages.IMAGE_REPOSITORY}:{packages.DEFAULT_SUITE}"
NODE_PYTHON = "/usr/bin/python3"
LAB_PACKAGE = Path(__file__).resolve().parent
CHECKOUT = LAB_PACKAGE.parent
LABEL_NODE = "org.hapair-lab.node"
LABEL_DIR = "org.hapair-lab.dir"
LABEL_EXPORT = "org.hapair-lab.export"
LABEL_VERSION = "org.hapair-lab.version"  # + .<package>: the image's Debian versions
CAPABILITIES = ["NET_ADMIN", "SYS_ADMIN"]
DEVICES = ["/dev/fuse:/dev/fuse:rwm", "/dev/loop-control:/dev/loop-control:rwm"]
DEVICE_RULES = ["b 7:* rwm"]  # loop devices, and /dev/drbd0 made over one
# Docker mounts /proc/sys read-only; the network's part of it belongs to the node's own network
# namespace, and the lab writes there (the DHCP fleet's per-macvlan settings), as it can in a
# namespace node. The rest of /proc/sys (the host kernel's) stays read-only.
NET_SYSCTLS_RW = ("mount --bind /proc/sys/net /proc/sys/net",
                  "mount -o remount,bind,rw /proc/sys/net")
# Docker turns IPv6 off in a container whose networks have none (ours have none at all: the lab
# wires the node itself); a node's segments carry IPv6 as in a namespace node.
IPV6_ON = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0"}
STATE_FILE = "docker.json"  # in the lab's directory: the image this lab pinned
CONTAINER_FILE = "container.json"  # in a node's directory: its current container


class DockerBackend:
    name = "docker"

    python = NODE_PYTHON

    def __init__(self, image: str | None = None) -> None:
        self.image: str | None = image or DEFAULT_IMAGE
        self._pinned: dict[str, Any] | None = None

    # -- the lab --------------------------------------------------------------------------------
    def prepare(self, lab: Lab) -> None:
        """The engine answers, the image exists; pin the image's ID for the lab's whole life
        (a rebuild under the same tag must not change a node that restarts) and export its
        persistent files once per image."""
        import docker.errors
        how = dockerd.ensure()
        lab.records.add("docker_engine", how=how, url=dockerd.base_url())
        client = dockerd.client()
        try:
            try:
                image = client.images.get(self.image)
            except docker.errors.ImageNotFound:
                raise BackendError(f"no image {self.image} in the lab's Docker engine: "
                                   "`lab image build` makes hapair-node:bookworm") from None
            files = _image_files(client, image)
        finally:
            client.close()
        versions = {k.rsplit(".", 1)[-1]: v for k, v in (image.labels or {}).items()
                    if k.startswith(f"{LABEL_VERSION}.")}
        state = {"image": self.image, "image_id": image.id, "files": str(files),
                 "versions": versions}
        _write_json(lab.dir / STATE_FILE, state)
        self._pinned = state
        lab.log_event("docker.prepare", engine=how, image=self.image, image_id=image.id)

    def _state(self, lab: Lab) -> dict[str, Any]:
        """What `prepare` pinned (read once per process: it never changes)."""
        if self._pinned is None:
            self._pinned = _read_json(lab.dir / STATE_FILE)
            if self._pinned is None:
                raise BackendError(f"lab {lab.name}: its docker backend was never prepared")
        return self._pinned

    # -- a node ---------------------------------------------------------------------------------
    def source_root(self, node: Node) -> Path:
        try:
            return Path(self._state(node.lab)["files"])
        except BackendError:  # before `prepare`: there is nothing to copy from yet
            return node.dir / "no-image-files"

    def provision(self, node: Node) -> None:
        """The node's volume, made (and recorded) once; the node's ``fs`` links to its data."""
        link = node.dir / "fs"
        if link.is_symlink() or link.exists():
            return
        name = _object_name(node)
        node.lab.records.add("docker_volume", name=name)
        client = dockerd.client()
        try:
            volume = client.volumes.create(name=name, labels=_labels(node))
            mountpoint = Path(volume.attrs["Mountpoint"])
        finally:
            client.close()
        node.dir.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        link.symlink_to(mountpoint)

    def launch(self, node: Node) -> DockerLaunch:
        name = _object_name(node)
        node.lab.records.add("docker_container", name=name)
        launch = DockerLaunch(node, name, self._create_args(node, name))
        launch.begin()
        return launch

    def _create_args(self, node: Node, name: str) -> dict[str, Any]:
        from docker.types import Mount
        spec = node.container_spec
        mounts = [Mount(target=path, source=os.path.realpath(host), type="bind")
                  for host, path in spec.binds()]
        mounts.append(Mount(target=f"{packages.CODE_DIR}/lab", source=str(LAB_PACKAGE),
                            type="bind", read_only=True))
        # the lab's own directory and the checkout at their own paths, as a namespace node sees
        # them: the replicator's backing images and the lab's records, dhclient's hook script
        # and the probes' streams are named by host paths (the checkout read-only)
        mounts.append(Mount(target=str(node.lab.dir), source=str(node.lab.dir), type="bind"))
        mounts.append(Mount(target=str(CHECKOUT), source=str(CHECKOUT), type="bind",
                            read_only=True))
        setup = " && ".join([*(f"mkdir -p {d}" for d in container.RUN_DIRS), *NET_SYSCTLS_RW])
        return {
            "image": self._state(node.lab)["image_id"],
            "name": name,
            "hostname": node.name,
            "entrypoint": ["/usr/bin/tini", "-s", "--"],
            "command": ["/bin/sh", "-c", f"{setup} && exec sleep infinity"],
            "network_mode": "none",
            "cap_add": CAPABILITIES,
            "devices": DEVICES,
            "device_cgroup_rules": DEVICE_RULES,
            "sysctls": {**IPV6_ON, **{k.replace("/", "."): v for k, v in spec.sysctls.items()}},
            "tmpfs": {"/run": "mode=755", "/tmp": "mode=1777"},
            "mounts": mounts,
            "labels": _labels(node),
            "environment": dict(container.NODE_ENV),
            "detach": True,
        }

    def cgroup(self, node: Node) -> Cgroup:
        """The container's own cgroup, as recorded at start; a path that does not exist while
        the node is stopped (no processes, never frozen)."""
        data = _read_json(node.dir / "runtime.json")
        if data and data.get("cgroup"):
            return Cgroup(Path(data["cgroup"]))
        return Cgroup.for_node(node.lab.name, node.name)

    def freeze(self, node: Node) -> None:
        """`docker pause`, which is the kernel freezer on the container's cgroup. runc gives
        the freezer only a moment and reports "unable to freeze" when a task is slow to stop
        (seen once in 10 suites, a shell forking every 20 ms on a loaded machine); the lab then
        asks the same freezer itself and waits as long as for a namespace node (5 s).
        `thaw` handles a container frozen behind Docker's back."""
        import docker.errors
        try:
            self._call(node, "pause")
        except docker.errors.APIError as exc:
            if "unable to freeze" not in str(exc):
                raise TimeoutError(f"{node.name}: docker pause failed: {exc}") from None
            node.cgroup.freeze(wait=True, timeout=5.0)
            return
        try:
            wait_for(node.cgroup.frozen, timeout=5, interval=0.005,
                     what=f"{node.name}'s freezer to say FROZEN after docker pause")
        except WaitTimeout as exc:
            raise TimeoutError(str(exc)) from None

    def thaw(self, node: Node) -> None:
        import docker.errors
        try:
            self._call(node, "unpause")
        except docker.errors.APIError:
            node.cgroup.thaw()  # frozen behind Docker's back (a crash freezes the cgroup)

    def discard(self, node: Node) -> None:
        """Remove the node's container (its processes are dead); the volume stays."""
        import docker.errors
        data = _read_json(node.dir / CONTAINER_FILE)
        if not data:
            return
        client = dockerd.client()
        try:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(data["id"]).remove(force=True)
        finally:
            client.close()
        (node.dir / CONTAINER_FILE).unlink(missing_ok=True)

    def versions(self, lab: Lab) -> dict[str, str]:
        """The Debian versions of the packages inside the image this lab pinned."""
        return dict(self._state(lab).get("versions") or {})

    def describe(self, node: Node) -> dict[str, Any]:
        data = _read_json(node.dir / CONTAINER_FILE)
        return {"image": self.image, "container": (data or {}).get("id", "")[:12]}

    def _call(self, node: Node, verb: str) -> None:
        """`docker pause` / `unpause` the node's container."""
        data = _read_json(node.dir / CONTAINER_FILE)
        if not data:
            raise BackendError(f"{node.name} has no container")
        client = dockerd.client()
        try:
            getattr(client.api, verb)(data["id"])
        finally:
            client.close()


class DockerLaunch:
    """A node container being created and started in a thread of its own, so that `Lab.up`
    starts every node side by side as with the namespace backend."""

    def __init__(self, node: Node, name: str, args: dict[str, Any]) -> None:
        self.node = node
        self.name = name
        self.args = args
        self.started_mono = time.monotonic()
        self.ready_mono: float | None = None
        self._running: container.Running | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"docker-{node.name}",
                                        daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._running = self._create_and_start()
            self.ready_mono = time.monotonic()
        except BaseException as exc:  # handed to ready()
            self._error = exc

    def _create_and_start(self) -> container.Running:
        client = dockerd.client()
        try:
            made = client.containers.create(**self.args)
            self.node.lab.records.add("docker_container", name=self.name, id=made.id)
            _write_json(self.node.dir / CONTAINER_FILE, {"id": made.id, "name": self.name})
            made.start()
            made.reload()
            pid = int(made.attrs["State"]["Pid"])
            if not pid:
                raise container.ContainerError(f"container {self.name} did not start: "
                                               f"{made.attrs['State'].get('Error', '')}")
            return container.Running(pid, pid, None, container=made.id,
                                     cgroup=str(_cgroup_of(pid)))
        finally:
            client.close()

    def ready(self, timeout: float = 30.0) -> container.Running:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise container.ContainerError(f"container {self.name} did not start within "
                                           f"{timeout} s")
        if self._error is not None:
            raise container.ContainerError(f"container {self.name}: {self._error}")
        assert self._running is not None
        return self._running


def remove_recorded(machines: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> list[str]:
    """Remove the containers and volumes a lab recorded (by ID where known, else by the exact
    name it recorded before making it). Nothing else is looked at."""
    import docker.errors
    done: list[str] = []
    ids: dict[str, str] = {}
    for entry in machines:
        ids[entry["name"]] = entry.get("id") or ids.get(entry["name"], "") or ""
    try:
        client = dockerd.client()
    except dockerd.DockerUnavailable as exc:
        return [f"left {len(ids)} containers, {len(volumes)} volumes: {exc}"]
    try:
        threads = []
        for name, cid in ids.items():
            def remove(ref: str = cid or name) -> None:
                with contextlib.suppress(docker.errors.NotFound):
                    made = client.containers.get(ref)
                    _kill_processes(made)
                    made.remove(force=True)
                    done.append(f"removed container {ref[:12]}")
            threads.append(threading.Thread(target=remove))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for entry in volumes:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(entry["name"]).remove(force=True)
                done.append(f"removed volume {entry['name']}")
    finally:
        client.close()
    return done


def _kill_processes(made: Any) -> None:
    """Empty a container's cgroup the lab's way before Docker removes it: SIGKILL while
    thawing, and abort the FUSE connections of its replicator if a process is stuck on them
    (Docker's own kill would wait forever for such a process)."""
    pid = int(made.attrs.get("State", {}).get("Pid") or 0)
    if not pid:
        return
    with contextlib.suppress(OSError, container.ContainerError, TimeoutError):
        Cgroup(_cgroup_of(pid)).kill_all()


def _object_name(node: Node) -> str:
    """Unique per lab directory (two lab roots may both have a lab `hapair`)."""
    digest = hashlib.sha1(str(node.lab.dir).encode()).hexdigest()[:6]
    return f"hapair-{node.lab.name}-{node.name}-{digest}"


def _labels(node: Node) -> dict[str, str]:
    return {dockerd.LABEL_LAB: node.lab.name, LABEL_NODE: node.name,
            LABEL_DIR: str(node.lab.dir)}


def _cgroup_of(pid: int) -> Path:
    """The freezer cgroup (v1) or the unified one (v2) of a host process."""
    unified = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return V1_ROOT / path.lstrip("/")
        if controllers == "":
            unified = V2_ROOT / path.lstrip("/")
    if unified is None:
        raise container.ContainerError(f"process {pid}: no freezer cgroup")
    return unified


def _image_files(client: Any, image: Any) -> Path:
    """The image's own copies of a node's persistent paths, exported once per image ID into
    ``images_dir()/files-<id>`` (what the namespace backend copies from the host)."""
    target = images_dir() / f"files-{image.id.split(':')[-1][:16]}"
    if target.is_dir():
        return target
    import docker.errors
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    made = client.containers.create(image.id, command=["true"], network_mode="none",
                                     labels={LABEL_EXPORT: "1"})
    try:
        for path, _ in container.PERSISTENT_DIRS + container.PERSISTENT_FILES:
            try:
                stream, _ = made.get_archive(path)
            except docker.errors.NotFound:
                continue
            parent = tmp / Path(path).parent.relative_to("/")
            parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                # the image's own files, owners and modes kept as they are (our own image)
                tar.extractall(parent, numeric_owner=True, filter="fully_trusted")
    finally:
        made.remove(force=True)
    try:
        os.rename(tmp, target)
    except OSError:  # another lab exported it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
