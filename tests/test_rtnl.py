"""lab.rtnl's message encoding and decoding, checked against the kernel's layouts by hand."""

from __future__ import annotations

import socket
import struct

import pytest

from lab import rtnl


def test_attr_is_padded_to_four_bytes() -> None:
    encoded = rtnl.attr(rtnl.IFLA_IFNAME, rtnl.cstr("eth0"))
    assert encoded == struct.pack("=HH", 9, rtnl.IFLA_IFNAME) + b"eth0\0" + b"\0\0\0"
    assert len(encoded) % 4 == 0


def test_nested_attributes_round_trip() -> None:
    inner = rtnl.attr(rtnl.IFLA_INFO_KIND, rtnl.cstr("veth"))
    outer = rtnl.nested(rtnl.IFLA_LINKINFO, inner)
    attrs = rtnl.parse_attrs(outer)
    assert set(attrs) == {rtnl.IFLA_LINKINFO}  # the nested flag is stripped from the type
    assert rtnl.parse_attrs(attrs[rtnl.IFLA_LINKINFO])[rtnl.IFLA_INFO_KIND] == b"veth\0"


def test_link_decode() -> None:
    body = (rtnl.ifinfo(index=7, flags=rtnl.IFF_UP)
            + rtnl.attr(rtnl.IFLA_IFNAME, rtnl.cstr("lsvm1-0"))
            + rtnl.attr(rtnl.IFLA_ADDRESS, rtnl.mac_bytes("00:15:5d:01:02:07"))
            + rtnl.attr(rtnl.IFLA_MASTER, rtnl.u32(3))
            + rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.attr(rtnl.IFLA_INFO_KIND, rtnl.cstr("veth"))))
    link = rtnl.Link.decode(body)
    assert (link.index, link.name, link.up, link.master, link.mac, link.kind) == (
        7, "lsvm1-0", True, 3, "00:15:5d:01:02:07", "veth")


def test_link_decode_without_master_or_up() -> None:
    link = rtnl.Link.decode(rtnl.ifinfo(index=1) + rtnl.attr(rtnl.IFLA_IFNAME, rtnl.cstr("lo")))
    assert (link.up, link.master, link.kind) == (False, None, None)


@pytest.mark.parametrize(("family", "text"), [(socket.AF_INET, "192.168.1.6"),
                                              (socket.AF_INET6, "fe80::215:5dff:fe01:207")])
def test_address_decode(family: int, text: str) -> None:
    import ipaddress
    packed = ipaddress.ip_address(text).packed
    body = (struct.pack("=BBBBI", family, 64, 0, 0, 2) + rtnl.attr(rtnl.IFA_ADDRESS, packed)
            + rtnl.attr(rtnl.IFA_FLAGS, rtnl.u32(rtnl.IFA_F_NODAD | 0x100))
            + rtnl.attr(rtnl.IFA_LABEL, rtnl.cstr("enp2s1:0")))
    addr = rtnl.Address.decode(body)
    assert (addr.address, addr.prefixlen, addr.index, addr.label) == (text, 64, 2, "enp2s1:0")
    assert addr.flags == rtnl.IFA_F_NODAD | 0x100  # IFA_FLAGS wins over the 8-bit field


def test_eui64_link_local_matches_the_kernels() -> None:
    # as seen on lsvm2 and rtbr1 with the kernel's own address generation
    assert rtnl.eui64_link_local("52:54:00:63:1e:59") == "fe80::5054:ff:fe63:1e59"
    assert rtnl.eui64_link_local("6c:b0:ce:e1:70:18") == "fe80::6eb0:ceff:fee1:7018"


def test_error_text_prefers_the_kernels_message() -> None:
    request = struct.pack("=IHHII", 16, rtnl.RTM_NEWLINK, 0, 1, 0)
    payload = struct.pack("=i", -95) + request + rtnl.attr(rtnl.NLMSGERR_ATTR_MSG,
                                                          rtnl.cstr("Unknown device type"))
    assert rtnl._error_text(95, rtnl.NLM_F_ACK_TLVS | rtnl.NLM_F_CAPPED, payload) == \
        "Unknown device type"
    assert rtnl._error_text(95, 0, struct.pack("=i", -95) + request) == \
        "Operation not supported"
