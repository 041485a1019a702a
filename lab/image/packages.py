"""What a node image contains, said once for the debootstrap build and the Dockerfile alike.

Only what runs inside a node: the pair's daemons and the tools their scripts call (heartbeat's
agents need ifconfig, fuser, blockdev and modprobe; the replicator needs fuse and losetup), the
DNS tools every node offers, and Python for the lab's own node-side code (replicator, probes,
syslog listener, fake registrar). Host-only tools (tmux, chromium, mininet) stay out.
"""

from __future__ import annotations

DEBIAN_PACKAGES = (
    "dnsmasq", "heartbeat", "drbd-utils", "ddclient", "isc-dhcp-client",
    "iproute2", "nftables", "net-tools", "tcpdump", "fuse3", "tini", "psmisc",
    "e2fsprogs", "util-linux", "mount", "procps", "iputils-ping", "iputils-arping", "kmod",
    "openssl", "ca-certificates", "libio-socket-ssl-perl", "bind9-dnsutils", "ldnsutils",
    "python3",
)

# The lab's node-side Python imports these (pure Python wheels, installed for any python3).
PYTHON_REQUIREMENTS = ("pyroute2==0.9.7", "dnspython>=2.6,<3")

# Where the lab's code and its Python dependencies live inside the image; a .pth file in the
# system's dist-packages puts both on python3's path, so `python3 -m lab...` works as is.
CODE_DIR = "/opt/hapair-lab/src"
SITE_DIR = "/opt/hapair-lab/site"
PTH_FILE = "/usr/lib/python3/dist-packages/hapair-lab.pth"

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITES = ("bookworm", "trixie")
DEFAULT_SUITE = "bookworm"
IMAGE_REPOSITORY = "hapair-node"

# Versions that name an image, and the packages they are read from.
TAG_VERSIONS = (("dnsmasq", "dnsmasq"), ("hb", "heartbeat"))
RECORDED_VERSIONS = ("dnsmasq", "heartbeat", "drbd-utils", "ddclient", "isc-dhcp-client",
                     "python3", "tini", "nftables")


def upstream_version(debian_version: str) -> str:
    """`1:3.0.6-13+b2` -> `3.0.6`: no epoch, no Debian revision."""
    version = debian_version.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def image_tag(suite: str, versions: dict[str, str]) -> str:
    """`hapair-node:bookworm-dnsmasq2.90-hb3.0.6`: the suite and the daemons' versions."""
    parts = [suite] + [f"{short}{upstream_version(versions[package])}"
                       for short, package in TAG_VERSIONS if package in versions]
    return f"{IMAGE_REPOSITORY}:{'-'.join(parts)}"


def apt_sources(suite: str) -> str:
    """The suite, its updates and its security archive (sid has neither)."""
    lines = [f"deb {MIRROR} {suite} main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {MIRROR} {suite}-updates main")
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    return "\n".join(lines) + "\n"
