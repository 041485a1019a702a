"""DRBD 8.4's connection handshake, as a pure decision: who syncs from whom, or split-brain.

Both nodes run the same rules on mirrored inputs when they connect (DRBD's
``drbd_uuid_compare`` and ``drbd_sync_handshake``, documented in the DRBD 8.4 user's guide and
drbd.conf(5)); the lab keeps them pure so every row of the table is a unit test.

Sign convention, as in DRBD: ``hg > 0`` — this node becomes SyncSource (the peer's differing
blocks are overwritten), ``hg < 0`` — this node becomes SyncTarget, ``|hg| == 2`` — full sync,
``|hg| == 100`` — split-brain (100: auto-recoverable by after-sb policies; -100: not),
``-1000`` — unrelated data. The lowest bit of a UUID is DRBD's "was Primary" flag: it is
ignored when UUIDs are compared, and the after-sb "younger/older primary" policies read it from
the *bitmap* UUID (the generation current when the split happened).
"""

from __future__ import annotations

from dataclasses import dataclass, field

UUID_JUST_CREATED = 4  # the current UUID create-md writes


@dataclass(frozen=True)
class Uuids:
    """Generation identifiers: current, bitmap (generation the bitmap is relative to), history."""

    current: int
    bitmap: int = 0
    history: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Side:
    """What one node brings to the handshake."""

    uuids: Uuids
    role: str = "Secondary"  # Primary | Secondary
    disk: str = "UpToDate"  # UpToDate | Consistent | Outdated | Inconsistent
    bits: int = 0  # blocks set in this node's bitmap (its changes since the split)
    crashed_primary: bool = False
    discard_my_data: bool = False
    can_demote: bool = True  # whether "become Secondary" would succeed (device not in use)


@dataclass(frozen=True)
class Policy:
    """The resource's ``net`` section choices that matter to the handshake."""

    after_sb_0pri: str = "disconnect"
    after_sb_1pri: str = "disconnect"
    after_sb_2pri: str = "disconnect"
    rr_conflict: str = "disconnect"
    always_asbp: bool = False


@dataclass(frozen=True)
class Outcome:
    """The handshake's verdict for *this* node."""

    hg: int
    rule: int
    action: str  # "none" | "source" | "target" | "disconnect"
    full: bool = False
    split_brain: bool = False
    auto_resolved: bool = False
    handlers: tuple[str, ...] = ()  # helpers DRBD would call on this node, in order
    demote: bool = False  # this node gives up Primary (call-pri-lost-after-sb, success path)
    messages: tuple[str, ...] = field(default=())


def _m(u: int) -> int:
    return u & ~1


def uuid_compare(local: Side, peer: Side, resolve_conflicts: bool) -> tuple[int, int]:
    """DRBD 8.4's UUID comparison; returns ``(hg, rule_nr)``.

    ``resolve_conflicts`` is set on exactly one side of a connection; it breaks ties so both
    sides reach mirrored decisions.
    """
    me, pe = local.uuids, peer.uuids
    self_c, peer_c = _m(me.current), _m(pe.current)
    if self_c == UUID_JUST_CREATED and peer_c == UUID_JUST_CREATED:
        return 0, 10
    if self_c in (UUID_JUST_CREATED, 0) and peer_c != UUID_JUST_CREATED:
        return -2, 20
    if self_c != UUID_JUST_CREATED and peer_c in (UUID_JUST_CREATED, 0):
        return 2, 30
    if self_c == peer_c:
        # A resync finished but one side never heard of it: it still has a bitmap UUID.
        if pe.bitmap == 0 and me.bitmap != 0:
            return 1, 34 if _m(me.bitmap) == _m(pe.history[0]) else 36
        if me.bitmap == 0 and pe.bitmap != 0:
            return -1, 35 if _m(pe.bitmap) == _m(me.history[0]) else 37
        # Common power failure: the node that crashed while Primary becomes SyncSource.
        rct = (1 if local.crashed_primary else 0) + (2 if peer.crashed_primary else 0)
        if rct == 0:
            return 0, 40
        if rct == 1:
            return 1, 40
        if rct == 2:
            return -1, 40
        return (1 if resolve_conflicts else -1), 40
    if _m(pe.bitmap) == self_c:
        return -1, 50  # the peer moved on from my current generation: I'm behind
    if any(_m(h) == self_c for h in pe.history):
        return -2, 60
    if _m(me.bitmap) == peer_c:
        return 1, 70
    if any(_m(h) == peer_c for h in me.history):
        return 2, 80
    if _m(me.bitmap) == _m(pe.bitmap) and _m(me.bitmap) != 0:
        return 100, 90  # both moved on from the same generation: split-brain
    for h in me.history:
        for p in pe.history:
            if h and _m(h) == _m(p):
                return -100, 100
    return -1000, 100


def recover_0p(local: Side, peer: Side, policy: Policy, resolve_conflicts: bool) -> int:
    """``after-sb-0pri`` (also used by ``consensus``, ``violently`` and the ``call-*`` ones)."""
    p = policy.after_sb_0pri
    self_pri = local.uuids.bitmap & 1  # was Primary when the split happened
    peer_pri = peer.uuids.bitmap & 1
    ch_self, ch_peer = local.bits, peer.bits
    tie = -1 if resolve_conflicts else 1
    if p == "disconnect":
        return -100
    if p == "discard-local":
        return -1
    if p == "discard-remote":
        return 1
    if p in ("discard-younger-primary", "discard-older-primary"):
        younger = p == "discard-younger-primary"
        if self_pri == 0 and peer_pri == 1:
            return -1 if younger else 1
        if self_pri == 1 and peer_pri == 0:
            return 1 if younger else -1
        p = "discard-least-changes"  # DRBD falls through when the flags do not decide
    if p == "discard-zero-changes":
        if ch_peer == 0 and ch_self == 0:
            return tie
        if ch_peer == 0:
            return 1
        if ch_self == 0:
            return -1
        return -100
    if p == "discard-least-changes":
        if ch_self < ch_peer:
            return -1
        if ch_self > ch_peer:
            return 1
        return tie
    return -100  # configuration error: policy not valid for 0 primaries


def sync_handshake(
    local: Side, peer: Side, policy: Policy, resolve_conflicts: bool
) -> Outcome:
    """The whole decision DRBD 8.4 makes when two nodes connect."""
    hg, rule = uuid_compare(local, peer, resolve_conflicts)
    msgs: list[str] = [f"uuid_compare()={hg} by rule {rule}"]
    handlers: list[str] = []
    demote = False
    if hg == -1000:
        return Outcome(hg, rule, "disconnect", messages=(*msgs, "Unrelated data, aborting!"))
    order = ["Diskless", "Inconsistent", "Outdated", "Consistent", "UpToDate"]
    mine, theirs = order.index(local.disk), order.index(peer.disk)
    inc = order.index("Inconsistent")
    if (mine == inc and theirs > inc) or (theirs == inc and mine > inc):
        f = hg == -100 or abs(hg) == 2
        hg = 1 if mine > inc else -1
        if f:
            hg *= 2
        msgs.append(f"Becoming sync {'source' if hg > 0 else 'target'} due to disk states.")
    split_brain = abs(hg) == 100
    auto = False
    if split_brain:
        handlers.append("initial-split-brain")
    if hg == 100 or (hg == -100 and policy.always_asbp):
        pcount = (local.role == "Primary") + (peer.role == "Primary")
        forced = hg == -100
        if pcount == 0:
            hg = recover_0p(local, peer, policy, resolve_conflicts)
        elif pcount == 1:
            hg, d, h = _recover_1p(local, peer, policy, resolve_conflicts)
            demote, handlers = d, handlers + h
        else:
            hg, d, h = _recover_2p(local, peer, policy, resolve_conflicts)
            demote, handlers = d, handlers + h
        if abs(hg) < 100:
            auto = True
            msgs.append(
                f"Split-Brain detected, {pcount} primaries, automatically solved. "
                f"Sync from {'peer' if hg < 0 else 'this'} node"
            )
            if forced:
                hg *= 2
    if hg == -100:
        if local.discard_my_data and not peer.discard_my_data:
            hg = -1
        elif peer.discard_my_data and not local.discard_my_data:
            hg = 1
        if abs(hg) < 100:
            msgs.append(f"Split-Brain detected, manually solved. "
                        f"Sync from {'peer' if hg < 0 else 'this'} node")
    if abs(hg) == 100:
        msgs.append("Split-Brain detected but unresolved, dropping connection!")
        handlers.append("split-brain")
        return Outcome(hg, rule, "disconnect", split_brain=True, handlers=tuple(handlers),
                       demote=demote, messages=tuple(msgs))
    if hg > 0 and mine <= inc:
        msgs.append("I shall become SyncSource, but I am inconsistent!")
        return Outcome(hg, rule, "disconnect", split_brain=split_brain, handlers=tuple(handlers),
                       messages=tuple(msgs))
    if hg < 0 and local.role == "Primary" and not demote and mine >= order.index("Consistent"):
        if policy.rr_conflict == "call-pri-lost":
            handlers.append("pri-lost")
        if policy.rr_conflict != "violently":
            msgs.append("I shall become SyncTarget, but I am primary!")
            return Outcome(hg, rule, "disconnect", split_brain=split_brain,
                           auto_resolved=auto, handlers=tuple(handlers), messages=tuple(msgs))
        msgs.append("Becoming SyncTarget, violating the stable-data assumption")
    action = "source" if hg > 0 else "target" if hg < 0 else "none"
    return Outcome(hg, rule, action, full=abs(hg) >= 2, split_brain=split_brain,
                   auto_resolved=auto, handlers=tuple(handlers), demote=demote,
                   messages=tuple(msgs))


def _recover_1p(
    local: Side, peer: Side, policy: Policy, rc: bool
) -> tuple[int, bool, list[str]]:
    p = policy.after_sb_1pri
    primary = local.role == "Primary"
    if p == "disconnect":
        return -100, False, []
    if p == "consensus":
        hg = recover_0p(local, peer, policy, rc)
        if (hg == -1 and not primary) or (hg == 1 and primary):
            return hg, False, []
        return -100, False, []
    if p in ("violently", "violently-as0p"):
        return recover_0p(local, peer, policy, rc), False, []
    if p == "discard-secondary":
        return (1 if primary else -1), False, []
    if p == "call-pri-lost-after-sb":
        hg = recover_0p(local, peer, policy, rc)
        if hg == -1 and primary:
            if local.can_demote:
                return hg, True, []
            return -100, False, ["pri-lost-after-sb"]
        return hg, False, []
    return -100, False, []  # configuration error


def _recover_2p(
    local: Side, peer: Side, policy: Policy, rc: bool
) -> tuple[int, bool, list[str]]:
    p = policy.after_sb_2pri
    if p == "disconnect":
        return -100, False, []
    if p in ("violently", "violently-as0p"):
        return recover_0p(local, peer, policy, rc), False, []
    if p == "call-pri-lost-after-sb":
        hg = recover_0p(local, peer, policy, rc)
        if hg == -1:
            if local.can_demote:
                return hg, True, []
            return -100, False, ["pri-lost-after-sb"]
        return hg, False, []
    return -100, False, []  # configuration error
