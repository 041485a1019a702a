"""A node's root filesystem from Debian's archive, built once per suite and package list and
kept as a tarball (`images_dir()/rootfs-<suite>-<key>.tar`), so a rebuild of the image only
re-adds the lab's own code.

Every step that could touch the machine runs fenced in: debootstrap mounts /proc and /sys into
its target, so it runs in a private mount namespace (the root namespace never sees a mount);
packages are unpacked in a chroot inside fresh mount, PID and network namespaces with a
policy-rc.d that forbids starting services, so a maintainer script that starts a daemon anyway
starts it with no network and it dies with the PID namespace when the step ends. Only the
downloads (debootstrap's own, `apt-get --download-only`) reach the network, and only Debian's
archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.cgroup import DEFAULT_STATE_ROOT
from lab.image import packages

RECIPE = 2  # bump when the steps below change what a rootfs holds
POLICY_RC_D = ("#!/bin/sh\n# hapair-lab: a node starts its daemons itself, never on install\n"
               "exit 101\n")
# debootstrap copies the build host's resolver and name into the target: a node must learn
# neither (the lab writes each node's own)
NEUTRAL_FILES = {"etc/resolv.conf": "", "etc/hostname": "hapair-node\n"}

Say = Callable[[str], None]


class ImageBuildError(RuntimeError):
    pass


def images_dir() -> Path:
    """Shared by every lab root (a soak run's private root included): images are not a lab's."""
    return Path(DEFAULT_STATE_ROOT) / "images"


@dataclass(frozen=True)
class Rootfs:
    """A built root filesystem: its tarball and the Debian versions inside it."""

    suite: str
    tarball: Path
    versions: dict[str, str]


def cache_key(suite: str) -> str:
    recipe = json.dumps([RECIPE, suite, packages.DEBIAN_PACKAGES, packages.PYTHON_REQUIREMENTS,
                         packages.apt_sources(suite)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cached(suite: str) -> Rootfs | None:
    """The suite's rootfs if it was built before with today's recipe."""
    stem = images_dir() / f"rootfs-{suite}-{cache_key(suite)}"
    tarball, versions = stem.with_suffix(".tar"), stem.with_suffix(".json")
    if tarball.is_file() and versions.is_file():
        return Rootfs(suite, tarball, json.loads(versions.read_text()))
    return None


def build(suite: str, say: Say = print, rebuild: bool = False) -> Rootfs:
    """The suite's rootfs tarball, from the cache unless `rebuild` or the recipe changed."""
    if suite not in packages.SUITES:
        raise ValueError(f"unknown suite {suite!r} (known: {', '.join(packages.SUITES)})")
    found = None if rebuild else cached(suite)
    if found is not None:
        say(f"rootfs {suite}: cached {found.tarball}")
        return found
    stem = images_dir() / f"rootfs-{suite}-{cache_key(suite)}"
    work = stem.with_suffix(".build")
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    root.mkdir(parents=True)
    try:
        _debootstrap(suite, root, say)
        _install_packages(suite, root, say)
        _install_python(root, say)
        versions = _versions(root)
        for name, text in NEUTRAL_FILES.items():
            (root / name).unlink(missing_ok=True)
            (root / name).write_text(text)
        say(f"rootfs {suite}: packing {stem.with_suffix('.tar')}")
        _run(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "-cf",
              str(work / "rootfs.tar"), "."])
        (work / "versions.json").write_text(json.dumps(versions, indent=2, sort_keys=True))
        os.replace(work / "rootfs.tar", stem.with_suffix(".tar"))
        os.replace(work / "versions.json", stem.with_suffix(".json"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Rootfs(suite, stem.with_suffix(".tar"), versions)


def _debootstrap(suite: str, root: Path, say: Say) -> None:
    say(f"rootfs {suite}: debootstrap (minbase)")
    debs = images_dir() / f"debs-{suite}"
    debs.mkdir(parents=True, exist_ok=True)
    _run(["unshare", "--mount", "--propagation", "private", "--",
          "debootstrap", "--variant=minbase", f"--cache-dir={debs}", suite, str(root),
          packages.MIRROR])


def _install_packages(suite: str, root: Path, say: Say) -> None:
    say(f"rootfs {suite}: {len(packages.DEBIAN_PACKAGES)} packages")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    (root / "etc/apt/sources.list").write_text(packages.apt_sources(suite))
    apt = ["apt-get", "-q", "-y", "-o", "APT::Sandbox::User=root"]
    install = [*apt, "install", "--no-install-recommends", *packages.DEBIAN_PACKAGES]
    # downloads: the only steps with the network
    _in_chroot(root, [*apt, "update"], network=True)
    _in_chroot(root, [*install, "--download-only"], network=True)
    _in_chroot(root, install, network=False)
    _in_chroot(root, [*apt, "clean"], network=False)
    for cache in ("var/lib/apt/lists",):
        for entry in (root / cache).glob("*_*"):
            entry.unlink()


def _in_chroot(root: Path, argv: Sequence[str], network: bool) -> None:
    """`argv` chrooted into `root`, in fresh mount and PID namespaces (and a fresh network
    namespace unless it downloads), with the chroot's own /proc."""
    fence = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private"]
    if not network:
        fence.append("--net")
    script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LANG": "C.UTF-8", "HOME": "/root"}
    _run([*fence, "--", "/bin/sh", "-c", script, str(root), *argv], env=env)


def _install_python(root: Path, say: Say) -> None:
    """The lab's Python dependencies (pure Python: installed by this interpreter's pip for
    whichever python3 the suite has) and the .pth that puts them and the lab's code on the
    node's path."""
    say("rootfs: Python dependencies " + " ".join(packages.PYTHON_REQUIREMENTS))
    site = root / packages.SITE_DIR.lstrip("/")
    site.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
          "--disable-pip-version-check", "--target", str(site), *packages.PYTHON_REQUIREMENTS])
    (root / packages.CODE_DIR.lstrip("/")).mkdir(parents=True)
    pth = root / packages.PTH_FILE.lstrip("/")
    pth.parent.mkdir(parents=True, exist_ok=True)
    pth.write_text(f"{packages.CODE_DIR}\n{packages.SITE_DIR}\n")


def _versions(root: Path) -> dict[str, str]:
    """Debian versions of the packages that matter, read from the rootfs's dpkg database."""
    result = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                             "-f=${Package} ${Version}\\n", *packages.RECORDED_VERSIONS],
                            capture_output=True, text=True)
    versions = {}
    for line in result.stdout.splitlines():
        name, _, version = line.partition(" ")
        if version:
            versions[name] = version
    missing = [p for p in ("dnsmasq", "heartbeat") if p not in versions]
    if missing:
        raise ImageBuildError(f"rootfs lacks {', '.join(missing)}: {result.stderr.strip()}")
    return versions


def _run(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip()[-3000:]
        raise ImageBuildError(f"`{' '.join(argv[:6])} ...` failed ({result.returncode}):\n{tail}")
