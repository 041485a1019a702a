"""Node images and the docker backend's pure parts: tags, sources, the Dockerfile, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import container
from lab.backend import NamespaceBackend, make_backend
from lab.docker_backend import DockerBackend
from lab.image import packages
from lab.image.dockerfile import render

REPO = Path(__file__).resolve().parent.parent


def test_upstream_version_drops_epoch_and_revision() -> None:
    assert packages.upstream_version("1:3.0.6-13+b2") == "3.0.6"
    assert packages.upstream_version("2.90-4~deb12u2") == "2.90"
    assert packages.upstream_version("4.4.3-P1-2") == "4.4.3-P1"
    assert packages.upstream_version("0.19") == "0.19"


def test_image_tag_names_suite_and_daemon_versions() -> None:
    versions = {"dnsmasq": "2.90-4~deb12u2", "heartbeat": "1:3.0.6-13+b2", "ddclient": "3.10"}
    assert packages.image_tag("bookworm", versions) == "hapair-node:bookworm-dnsmasq2.90-hb3.0.6"


def test_apt_sources_have_updates_and_security_except_sid() -> None:
    assert "bookworm-security" in packages.apt_sources("bookworm")
    assert "trixie-updates" in packages.apt_sources("trixie")
    assert packages.apt_sources("sid").count("\n") == 1


def test_committed_dockerfile_is_the_rendered_one() -> None:
    """docker/Dockerfile is `lab image dockerfile`'s output: one package list for both."""
    assert (REPO / "docker" / "Dockerfile").read_text() == render()
    for package in packages.DEBIAN_PACKAGES:
        assert f"        {package}" in render()


def test_resolve_within_keeps_an_image_link_inside_the_image(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/drbd").mkdir(parents=True)
    (tmp_path / "usr/lib/drbd/drbdadm-84").write_text("image's")
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/drbdadm").symlink_to("/usr/lib/drbd/drbdadm-84")
    resolved = container.resolve_within(tmp_path, tmp_path / "usr/sbin/drbdadm")
    assert resolved == tmp_path / "usr/lib/drbd/drbdadm-84"


def test_populate_copies_from_the_source_root(tmp_path: Path) -> None:
    source = tmp_path / "image"
    (source / "etc/ha.d").mkdir(parents=True)
    (source / "etc/ha.d/ha.cf").write_text("from the image\n")
    spec = container.ContainerSpec(hostname="n1", fs_root=tmp_path / "fs",
                                   console=tmp_path / "console.log",
                                   cgroup=None,  # type: ignore[arg-type]
                                   source_root=source)
    spec.populate()
    assert (tmp_path / "fs/etc/ha.d/ha.cf").read_text() == "from the image\n"
    assert ("/etc/ha.d" in [path for _, path in spec.binds()])
    assert all(spec.source(path).exists() for _, path in spec.binds())


def test_backends_by_name() -> None:
    assert isinstance(make_backend("namespace"), NamespaceBackend)
    docker = make_backend("docker")
    assert isinstance(docker, DockerBackend)
    assert docker.image == "hapair-node:bookworm"
    assert make_backend("docker", "hapair-node:trixie").image == "hapair-node:trixie"
    with pytest.raises(ValueError, match="--image needs --backend docker"):
        make_backend("namespace", "hapair-node:bookworm")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("vm")


def test_a_lab_keeps_its_backend_and_image(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend is part of the lab's identity: another `lab` process attaching to it gets
    the same one ($LAB_BACKEND is only the default for new labs)."""
    from lab.lab import Lab
    from lab.state import teardown
    monkeypatch.setenv("HAPAIR_LAB_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("LAB_BACKEND", "docker")
    made = Lab.create("ident", stack="none", image="hapair-node:trixie")
    try:
        assert made.identity["backend"] == "docker"
        monkeypatch.setenv("LAB_BACKEND", "namespace")
        again = Lab.attach("ident")
        assert (again.backend.name, again.backend.image) == ("docker", "hapair-node:trixie")
        assert again.lsvm1.python == "/usr/bin/python3"
        plain = Lab.create("plain", stack="none")
        assert (plain.backend.name, plain.backend.image) == ("namespace", None)
        teardown("plain")
    finally:
        teardown("ident")
