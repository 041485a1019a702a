"""`lab image build`: the node image, imported into the lab's Docker engine and tagged with the
versions it contains (``hapair-node:bookworm-dnsmasq2.90-hb3.0.6``, and ``hapair-node:bookworm``
for the suite's newest build).

Two layers: the suite's root filesystem (lab/image/rootfs.py), imported once as
``hapair-node-base:<suite>-<key>``, then the lab's own code on top (a one-line build from that
local image: no registry). Rebuilding after a change to the lab's code redoes only the second.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import dockerd
from lab.image import packages, rootfs

LAB_PACKAGE = Path(__file__).resolve().parent.parent
LABEL_PREFIX = "org.hapair-lab"
ENTRYPOINT = ["/usr/bin/tini", "--"]
CMD = ["sleep", "infinity"]


@dataclass(frozen=True)
class Image:
    tag: str
    suite_tag: str
    id: str
    versions: dict[str, str]


def base_tag(suite: str) -> str:
    return f"{packages.IMAGE_REPOSITORY}-base:{suite}-{rootfs.cache_key(suite)}"


def build(suite: str = packages.DEFAULT_SUITE, say: rootfs.Say = print,
          rebuild: bool = False) -> Image:
    fs = rootfs.build(suite, say, rebuild=rebuild)
    client = dockerd.client(timeout=600)
    try:
        base = base_tag(suite)
        if rebuild or not _exists(client, base):
            say(f"image: docker import {fs.tarball.name} as {base}")
            repo, _, tag = base.partition(":")
            client.api.import_image_from_file(str(fs.tarball), repository=repo, tag=tag)
        tag = packages.image_tag(suite, fs.versions)
        say(f"image: {tag} (the lab's code on {base})")
        image, _ = client.images.build(fileobj=_context(base, suite, fs.versions),
                                       custom_context=True, tag=tag, rm=True, forcerm=True,
                                       pull=False)
        suite_tag = f"{packages.IMAGE_REPOSITORY}:{suite}"
        image.tag(packages.IMAGE_REPOSITORY, suite)
        return Image(tag, suite_tag, str(image.id), fs.versions)
    finally:
        client.close()


def _exists(client: Any, tag: str) -> bool:
    import docker.errors
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def labels(suite: str, versions: dict[str, str]) -> dict[str, str]:
    result = {f"{LABEL_PREFIX}.suite": suite}
    result.update({f"{LABEL_PREFIX}.version.{name}": v for name, v in sorted(versions.items())})
    return result


def _dockerfile(base: str, suite: str, versions: dict[str, str]) -> str:
    import json
    label_args = " ".join(f"{k}={json.dumps(v)}" for k, v in labels(suite, versions).items())
    return (f"FROM {base}\n"
            f"COPY lab {packages.CODE_DIR}/lab\n"
            f"LABEL {label_args}\n"
            f"ENTRYPOINT {json.dumps(ENTRYPOINT)}\n"
            f"CMD {json.dumps(CMD)}\n")


def _context(base: str, suite: str, versions: dict[str, str]) -> io.BytesIO:
    """The build context: the Dockerfile and the lab package (no caches)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        text = _dockerfile(base, suite, versions).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        tar.add(str(LAB_PACKAGE), arcname="lab", filter=_no_caches)
    buf.seek(0)
    return buf


def _no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    if name == "__pycache__" or name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
