"""One DNS question from inside a node, for checks and evidence: `python -m lab.services.ask`.

Why: nodes have no `dig`; this prints one line `RCODE | answer ; answer` so a test or a person
can see what a client gets over UDP or TCP from a given server.

    python -m lab.services.ask SERVER NAME [TYPE] [udp|tcp]
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.reversename


def ask(server: str, name: str, rdtype: str = "A", proto: str = "udp", timeout: float = 3.0
        ) -> str:
    if rdtype == "PTR" and not name.endswith(".arpa"):
        name = dns.reversename.from_address(name).to_text()
    query = dns.message.make_query(name, rdtype)
    try:
        if proto == "tcp":
            reply = dns.query.tcp(query, server, timeout=timeout)
        else:
            reply = dns.query.udp(query, server, timeout=timeout)
    except dns.exception.Timeout:
        return "TIMEOUT |"
    except OSError as exc:  # e.g. no route to the server
        return f"UNREACHABLE | {exc.strerror}"
    answers = " ; ".join(rr.to_text() for rr in reply.answer)
    return f"{dns.rcode.to_text(reply.rcode())} | {answers}"


REPO = Path(__file__).resolve().parents[2]


def ask_from(node: Any, server: str, name: str, rdtype: str = "A", proto: str = "udp") -> str:
    """The same question asked from inside `node` (its routes, its neighbours), with this
    checkout's code and this interpreter (a CI clone lives elsewhere)."""
    rc, out = node.execute(f"PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(node.python)} "
                           f"-m lab.services.ask {shlex.quote(server)} {shlex.quote(name)} "
                           f"{rdtype} {proto}")
    if rc != 0:
        raise RuntimeError(f"{node.name}: lab.services.ask failed ({rc}): {out.strip()}")
    return str(out).strip()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    rdtype = argv[3] if len(argv) > 3 else "A"
    proto = argv[4] if len(argv) > 4 else "udp"
    print(ask(argv[1], argv[2], rdtype, proto))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
