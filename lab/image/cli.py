"""``lab image build|list|dockerfile`` and ``lab docker status|stop``: node images and the
Docker engine the docker backend uses."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from lab.image import packages


def register(sub: Any) -> None:
    image = sub.add_parser("image", help="node images for --backend docker")
    verbs = image.add_subparsers(metavar="VERB")
    build = verbs.add_parser("build", help="debootstrap a suite, add the lab, docker import it")
    build.add_argument("--suite", choices=packages.SUITES, default=packages.DEFAULT_SUITE)
    build.add_argument("--rebuild", action="store_true",
                       help="rebuild the root filesystem even if one is cached")
    build.set_defaults(handler=cmd_build)
    verbs.add_parser("list", help="node images in the engine, with their versions"
                     ).set_defaults(handler=cmd_list)
    verbs.add_parser("dockerfile", help="print the Dockerfile that makes the same image"
                     ).set_defaults(handler=cmd_dockerfile)

    docker = sub.add_parser("docker", help="the Docker engine the docker backend uses")
    dverbs = docker.add_subparsers(metavar="VERB")
    dverbs.add_parser("status", help="who runs the engine, its storage driver"
                      ).set_defaults(handler=cmd_docker_status)
    dverbs.add_parser("stop", help="stop the lab's own dockerd (no lab container left)"
                      ).set_defaults(handler=cmd_docker_stop)


def cmd_build(args: argparse.Namespace) -> int:
    from lab.image import build
    began = time.monotonic()
    image = build.build(args.suite, rebuild=args.rebuild)
    print(f"{image.tag} ({image.id[:19]}), also {image.suite_tag}; "
          f"{time.monotonic() - began:.1f} s")
    for name, version in sorted(image.versions.items()):
        print(f"  {name} {version}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from lab import dockerd
    client = dockerd.client()
    try:
        for image in client.images.list(name=packages.IMAGE_REPOSITORY):
            versions = {k.rsplit(".", 1)[-1]: v for k, v in image.labels.items()
                        if ".version." in k}
            print(f"{', '.join(image.tags)}  {image.short_id}  "
                  + " ".join(f"{k}={v}" for k, v in sorted(versions.items())))
    finally:
        client.close()
    return 0


def cmd_dockerfile(args: argparse.Namespace) -> int:
    from lab.image.dockerfile import render
    print(render(), end="")
    return 0


def cmd_docker_status(args: argparse.Namespace) -> int:
    from lab import dockerd
    print(json.dumps(dockerd.info(), indent=2))
    return 0


def cmd_docker_stop(args: argparse.Namespace) -> int:
    from lab import dockerd
    print(dockerd.stop())
    return 0
