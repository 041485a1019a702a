"""The fake namecheap registrar on `inet`: install its files, start it, read its record.

Why a record file: a scenario must be able to say "the registrar recorded an update from
ddclient, sent by lsvm2"; every update is a JSON line in inet's /var/log/registrar.jsonl (see
registrar_server).
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

from lab.services.pki import Pki
from lab.services.proc import spawn

if TYPE_CHECKING:
    from lab.node import Node

DIR = "/var/lib/misc"
CERT = f"{DIR}/registrar.pem"
KEY = f"{DIR}/registrar.key"
PASSWORD = f"{DIR}/registrar.password"
RECORD = "/var/log/registrar.jsonl"


def install(node: Node, pki: Pki, password: str) -> None:
    """Put the certificate, key and expected password on inet's private disk (mode 600)."""
    for src, dst in ((pki.server_cert, CERT), (pki.server_key, KEY)):
        shutil.copyfile(src, node.path(dst))
    node.path(KEY).chmod(0o600)
    pw = node.path(PASSWORD)
    pw.touch(mode=0o600)
    pw.chmod(0o600)
    pw.write_text(password + "\n")


def start(node: Node, attribution: dict[str, list[int]]) -> int:
    """Start the server inside `node`; returns its host PID once both ports listen."""
    proc = spawn(node, [node.python, "-m", "lab.services.registrar_server",
                       "--password-file", PASSWORD, "--record", RECORD, "--cert", CERT,
                       "--key", KEY, "--attribution", json.dumps(attribution)],
                 "/var/log/registrar.out")
    node.wait_for_open_port(443, "tcp", timeout=15)
    node.wait_for_open_port(80, "tcp", timeout=15)
    return int(proc.pid)


def updates(node: Node) -> list[dict[str, Any]]:
    """Every update the registrar recorded so far."""
    try:
        text = node.path(RECORD).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
