"""The connection handshake's I/O: parameters and bitmaps exchanged, DRBD's decision applied.

Why apart from ``handshake``: that module is the pure decision table (tested case by case);
this one talks to the peer and turns the decision into states, UUIDs and a resync.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from lab.replicator import wire
from lab.replicator.handshake import Outcome, Policy, Side, Uuids, sync_handshake
from lab.replicator.metadata import Metadata

if TYPE_CHECKING:
    from lab.replicator.core import Replicator


def policy(r: Replicator) -> Policy:
    res = r.res
    return Policy(after_sb_0pri=res.net_opt("after-sb-0pri"),
                  after_sb_1pri=res.net_opt("after-sb-1pri"),
                  after_sb_2pri=res.net_opt("after-sb-2pri"),
                  rr_conflict=res.net_opt("rr-conflict"),
                  always_asbp=res.net_opt("always-asbp") in ("yes", "1"))


def _side(r: Replicator, md: Metadata) -> Side:
    return Side(uuids=md.sb.uuids, role=r.role, disk=r.dstate, bits=md.dirty_blocks,
                crashed_primary=md.sb.crashed_primary, discard_my_data=r.conn.discard_my_data,
                can_demote=r.role != "Primary" or r.roles.busy() is None)


def handshake(r: Replicator, link: wire.Link) -> bool:
    """Exchange parameters, decide, install the link; True if this node must send a resync.
    A ``disconnect`` decision closes the link without installing it."""
    md = r.md
    if md is None:
        raise wire.WireError("diskless connect is not supported")
    local = _side(r, md)
    link.send_json(wire.PARAMS, {
        "uuids": [local.uuids.current, local.uuids.bitmap, *local.uuids.history],
        "role": local.role, "disk": local.disk, "bits": local.bits, "size": md.data_size,
        "crashed_primary": local.crashed_primary, "discard_my_data": local.discard_my_data,
        "can_demote": local.can_demote})
    f = link.recv()
    if f.type != wire.PARAMS:
        raise wire.WireError("expected parameters")
    p = f.json()
    if p["size"] != md.data_size:
        raise wire.WireError(f"peer size {p['size']} != mine {md.data_size}")
    u = p["uuids"]
    peer = Side(uuids=Uuids(u[0], u[1], (u[2], u[3])), role=p["role"], disk=p["disk"],
                bits=p["bits"], crashed_primary=p["crashed_primary"],
                discard_my_data=p["discard_my_data"], can_demote=p["can_demote"])
    pol = policy(r)
    out = sync_handshake(local, peer, pol, r.conn.initiator)
    for m in out.messages:
        r.log(m)
    decision = {"hg": out.hg, "rule": out.rule, "action": out.action, "full": out.full,
                "split_brain": out.split_brain, "auto_resolved": out.auto_resolved,
                "handlers": list(out.handlers), "demote": out.demote,
                "my_changes_blocks": local.bits, "peer_changes_blocks": peer.bits,
                "pcount": (local.role == "Primary") + (peer.role == "Primary")}
    if out.split_brain:
        r.split_brain = {**decision, "policy": {
            "after-sb-0pri": pol.after_sb_0pri,
            "after-sb-1pri": pol.after_sb_1pri,
            "after-sb-2pri": pol.after_sb_2pri},
            "discarded": ("this node" if out.action == "target" else
                          "peer" if out.action == "source" else "nobody")}
    r.events.emit("handshake", **decision, role=r.role, peer_role=peer.role,
                  cstate=r.cstate, dstate=r.dstate, messages=list(out.messages))
    for h in out.handlers:
        r.run_handler(h)
    if out.action == "disconnect":
        link.close()
        with r.lock:
            r.conn.want_connect = False
        r.set_state(cstate="StandAlone", peer_role="Unknown", pdsk="DUnknown")
        return False
    if out.demote:
        r.log("Successfully gave up primary role.")
        r.roles.demote()
    r.conn.discard_my_data = False
    with r.io_lock:  # no application write may slip between bitmap and link
        return _data_path(r, link, md, out, peer)


def _data_path(r: Replicator, link: wire.Link, md: Metadata, out: Outcome,
               peer: Side) -> bool:
    """Bitmaps, link installation and the sync UUID; True if a resync must be sent."""
    # exchange bitmaps (DRBD ORs both sides' out-of-sync bits)
    link.send(wire.BITMAP, zlib.compress(bytes(md.bitmap)))
    f = link.recv()
    if f.type != wire.BITMAP:
        raise wire.WireError("expected bitmap")
    md.merge(zlib.decompress(f.payload))
    if out.full:
        md.set_all()
    r.conn.install(link, peer.role)
    if out.action == "source":
        r.resync.begin_source(link, md, out.full)
        return True
    if out.action == "target":
        f = link.recv()
        if f.type != wire.SYNC_UUID:
            raise wire.WireError("expected sync UUID")
        r.resync.begin_target(md, f.json()["uuid"], out.full)
        return False
    if md.sb.crashed_primary:
        md.sb.crashed_primary = False
        md.write_superblock()
    both_ok = r.dstate in ("UpToDate", "Consistent") and peer.disk in ("UpToDate", "Consistent")
    r.set_state(cstate="Connected", dstate="UpToDate" if both_ok else r.dstate,
                pdsk="UpToDate" if both_ok else peer.disk)
    return False
