"""Unit tests: framing and the cram-hmac challenge/response over a real socket pair."""

import socket
import threading

import pytest

from lab.replicator import wire


def pair() -> tuple[wire.Link, wire.Link]:
    a, b = socket.socketpair()
    return wire.Link(a), wire.Link(b)


def test_frames_round_trip() -> None:
    a, b = pair()
    a.send(wire.DATA, b"x" * 5000, seq=7, offset=4096)
    a.send_json(wire.STATE, {"role": "Primary"})
    f = b.recv()
    assert (f.type, f.seq, f.offset, f.payload) == (wire.DATA, 7, 4096, b"x" * 5000)
    assert b.recv().json() == {"role": "Primary"}


def _auth_both(secret_a: str, secret_b: str) -> tuple[BaseException | None, BaseException | None]:
    a, b = pair()
    errors: list[BaseException | None] = [None, None]

    def run(i: int, link: wire.Link, secret: str) -> None:
        try:
            wire.authenticate(link, "sha256", secret, 2.0)
        except (wire.WireError, OSError) as e:
            errors[i] = e
            link.close()

    ts = [threading.Thread(target=run, args=(0, a, secret_a)),
          threading.Thread(target=run, args=(1, b, secret_b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    return errors[0], errors[1]


def test_same_secret_authenticates() -> None:
    assert _auth_both("s3cret", "s3cret") == (None, None)


def test_wrong_secret_is_refused_on_both_sides() -> None:
    ea, eb = _auth_both("s3cret", "other")
    assert ea is not None and eb is not None
    assert "s3cret" not in str(ea) and "other" not in str(eb)


def test_unknown_algorithm() -> None:
    a, _ = pair()
    with pytest.raises(wire.AuthError, match="not available"):
        wire.authenticate(a, "nosuchhash", "x", 1.0)
