"""The fake registrar (runs inside `inet`): namecheap's dynamic-DNS protocol, as ddclient uses it.

Why a fake: ddclient must talk to something that behaves like Namecheap without leaving the lab.
It serves `GET /getip` over plain http (the caller's address, as Namecheap's page does) and
`GET /update?host=H&domain=D&password=P&ip=A` over https with a certificate from the lab's CA
(ddclient 3.10 always uses https for namecheap). Every update is one JSON line in the record file:
wall and monotonic time, host, domain, ip, whether it was accepted, the peer address and port, and
the node behind the router's NAT when the port tells it (`--attribution`, see lab.services.router).

    python -m lab.services.registrar_server --password-file F --record F --cert C --key K \
        [--attribution JSON] [--http-port 80] [--https-port 443]
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

OK_BODY = ("<?xml version=\"1.0\"?><interface-response><Command>SETDNSHOST</Command>"
           "<Language>eng</Language><IP>{ip}</IP><ErrCount>0</ErrCount><ResponseCount>0"
           "</ResponseCount><Done>true</Done><debug><![CDATA[]]></debug></interface-response>")
ERR_BODY = ("<?xml version=\"1.0\"?><interface-response><Command>SETDNSHOST</Command>"
            "<Language>eng</Language><ErrCount>1</ErrCount><errors><Err1>{err}</Err1></errors>"
            "<ResponseCount>1</ResponseCount><Done>true</Done></interface-response>")


def node_for_port(port: int, attribution: dict[str, list[int]]) -> str | None:
    """The node whose NAT port range holds `port` (pure; ranges are inclusive)."""
    for node, (low, high) in attribution.items():
        if low <= port <= high:
            return node
    return None


class _State:
    def __init__(self, password: str, record: str, attribution: dict[str, list[int]]) -> None:
        self.password = password
        self.record = record
        self.attribution = attribution
        self.lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self.lock, open(self.record, "a") as f:
            f.write(json.dumps(entry) + "\n")


def make_handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hapair-registrar/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the record file is the log; the password is in the query string

        def _send(self, code: int, body: str, ctype: str = "text/html") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            peer, port = self.client_address[0], int(self.client_address[1])
            if url.path.rstrip("/") == "/getip":
                self._send(200, peer)
                return
            if url.path.rstrip("/") != "/update":
                self._send(404, "not found")
                return
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            ok = q.get("password") == state.password
            ip = q.get("ip", peer)
            state.write({
                "t_wall": time.time(), "t_mono": time.monotonic(), "host": q.get("host"),
                "domain": q.get("domain"), "ip": ip, "accepted": ok, "peer": peer,
                "peer_port": port, "node": node_for_port(port, state.attribution),
                "tls": isinstance(self.connection, ssl.SSLSocket),
                "user_agent": self.headers.get("User-Agent", ""),
            })
            if ok:
                self._send(200, OK_BODY.format(ip=ip))
            else:
                self._send(200, ERR_BODY.format(err="Passwords do not match"))

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--attribution", default="{}")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--https-port", type=int, default=443)
    args = ap.parse_args(argv)
    with open(args.password_file) as f:
        password = f.read().strip()
    state = _State(password, args.record, json.loads(args.attribution))
    handler = make_handler(state)
    plain = ThreadingHTTPServer(("0.0.0.0", args.http_port), handler)
    tls = ThreadingHTTPServer(("0.0.0.0", args.https_port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    tls.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
