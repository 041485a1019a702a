"""A certificate authority made per lab, for the fake registrar's https (openssl CLI).

Why: ddclient 3.10 always speaks https to namecheap, so the lab registrar needs a certificate
for the registrar's real name that ddclient will trust. A CA per lab (never the system's trust
store) is handed to ddclient as `ssl_ca_file`. Keys are ECDSA P-256: making two of them takes
~10 ms where two RSA-2048 keys took 0.3-1 s of every lab's start (and OpenSSL 3, Perl's
IO::Socket::SSL and Python's ssl all speak ECDSA).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, server_name: str, days: int = 30) -> Pki:
    """Create (once) a CA and a server certificate for `server_name` in `directory` (mode 700)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if pki.ca_cert.exists() and pki.server_cert.exists() and pki.server_key.exists():
        return pki
    _openssl("req", "-x509", *KEY, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
             str(days), "-subj", "/CN=hapair-lab CA", cwd=directory)
    _openssl("req", *KEY, "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
             f"/CN={server_name}", cwd=directory)
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{server_name}\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", str(days), "-extfile", "san.ext",
             cwd=directory)
    for key in ("ca.key", "server.key"):
        (directory / key).chmod(0o600)
    return pki
