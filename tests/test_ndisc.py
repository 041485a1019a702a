"""The router solicitation the lab sends for a client (RFC 4861 4.1 and 4.6.1), byte by byte."""

from __future__ import annotations

import pytest

from lab.ndisc import ICMPV6_ROUTER_SOLICITATION, router_solicitation


def test_solicitation_carries_the_senders_link_layer_address() -> None:
    message = router_solicitation("02:00:c0:a8:01:c1")
    assert message[0] == ICMPV6_ROUTER_SOLICITATION == 133
    assert message[1:8] == bytes(7)  # code 0, checksum left to the kernel, reserved
    # option 1 (source link-layer address), length 1 (units of 8 octets), the MAC
    assert message[8:] == bytes([1, 1, 0x02, 0x00, 0xC0, 0xA8, 0x01, 0xC1])
    assert len(message) % 8 == 0


def test_solicitation_without_an_address_has_no_option() -> None:
    assert router_solicitation(None) == bytes([133]) + bytes(7)


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError, match="02:00:c0"):
        router_solicitation("02:00:c0")
