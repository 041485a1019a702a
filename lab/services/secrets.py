"""Secrets made fresh for each lab: heartbeat's authkey, DRBD's shared secret, the DDNS password.

Why generated: the seed prints placeholders, and a lab must never reuse a value someone could
have typed into a real system. Not pure on purpose (it draws random bytes); the renderer takes the
result as input so rendering stays pure.
"""

from __future__ import annotations

import secrets as _random

from lab.services.render import Secrets


def generate() -> Secrets:
    """Three independent random values, hex so they need no quoting anywhere."""
    return Secrets(
        authkey=_random.token_hex(16),
        drbd_secret=_random.token_hex(16),
        ddns_password=_random.token_hex(16),
    )
