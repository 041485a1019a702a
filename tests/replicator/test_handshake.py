"""Unit tests: DRBD 8.4's handshake rules and after-sb policies, case by case.

Each row cites the rule (drbd_uuid_compare rule numbers / drbd.conf(5) after-sb text) it checks.
UUIDs are small integers; bit 0 is DRBD's "was Primary" flag.
"""

import pytest

from lab.replicator.handshake import (
    UUID_JUST_CREATED,
    Policy,
    Side,
    Uuids,
    sync_handshake,
    uuid_compare,
)

A, B, C, D, E = 0x100, 0x200, 0x300, 0x400, 0x500


def side(cur: int, bm: int = 0, hist: tuple[int, int] = (0, 0), **kw: object) -> Side:
    return Side(uuids=Uuids(cur, bm, hist), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "local", "peer", "rc", "hg", "rule"),
    [
        ("both just created: nothing to sync",
         side(UUID_JUST_CREATED), side(UUID_JUST_CREATED), True, 0, 10),
        ("I am fresh, peer has data: full sync target",
         side(UUID_JUST_CREATED), side(A), True, -2, 20),
        ("I have data, peer is fresh: full sync source",
         side(A), side(UUID_JUST_CREATED), True, 2, 30),
        ("same generation, clean: no sync", side(A), side(A), True, 0, 40),
        ("same generation, primary flag bit ignored", side(A | 1), side(A), True, 0, 40),
        ("same generation, I crashed as Primary: I am source",
         side(A, crashed_primary=True), side(A), True, 1, 40),
        ("same generation, peer crashed as Primary: I am target",
         side(A), side(A, crashed_primary=True), True, -1, 40),
        ("both crashed as Primary, I hold resolve-conflicts: source",
         side(A, crashed_primary=True), side(A, crashed_primary=True), True, 1, 40),
        ("both crashed as Primary, peer holds resolve-conflicts: target",
         side(A, crashed_primary=True), side(A, crashed_primary=True), False, -1, 40),
        ("peer moved on from my current (its bitmap UUID is my current): target",
         side(A), side(B, A | 1), True, -1, 50),
        ("my current is in peer's history: full sync target",
         side(A), side(C, B, (A, 0)), True, -2, 60),
        ("I moved on from peer's current: source", side(B, A | 1), side(A), True, 1, 70),
        ("peer's current is in my history: full sync source",
         side(C, B, (A, 0)), side(A), True, 2, 80),
        ("both moved on from the same generation: split-brain (auto-recoverable)",
         side(B, A | 1), side(C, A), True, 100, 90),
        ("only a common history entry: split-brain (not auto-recoverable)",
         side(B, D, (A, 0)), side(C, E, (A, 0)), True, -100, 100),
        ("nothing in common: unrelated data", side(B, D), side(C, E), True, -1000, 100),
        ("lost resync-finished: I kept the bitmap UUID (source)",
         side(A, B, (C, 0)), side(A, 0, (B, C)), True, 1, 34),
        ("lost resync-finished: peer kept the bitmap UUID (target)",
         side(A, 0, (B, C)), side(A, B, (C, 0)), True, -1, 35),
    ],
)
def test_uuid_compare(name: str, local: Side, peer: Side, rc: bool, hg: int, rule: int) -> None:
    assert uuid_compare(local, peer, rc) == (hg, rule), name
    # The peer reaches the mirrored verdict with the mirrored tie-breaker.
    mirror, _ = uuid_compare(peer, local, not rc)
    assert mirror == -hg or (hg == -1000 and mirror == -1000) or abs(hg) == 100, name


def sb(lbits: int, pbits: int, lrole: str = "Secondary", prole: str = "Secondary",
       lpri: int = 1, ppri: int = 0, **kw: bool) -> tuple[Side, Side]:
    """A split-brain pair: both moved on from generation A (rule 90).

    lpri/ppri: the bitmap UUID's primary bit, i.e. who was Primary when they split.
    """
    local = side(B, A | lpri, bits=lbits, role=lrole,
                 can_demote=kw.get("l_can_demote", True))
    peer = side(C, A | ppri, bits=pbits, role=prole,
                can_demote=kw.get("p_can_demote", True))
    return local, peer


@pytest.mark.parametrize(
    ("policy", "pair", "rc", "action"),
    [
        # after-sb-0pri (no primaries when they reconnect)
        ("disconnect", sb(5, 9), True, "disconnect"),
        ("discard-zero-changes", sb(0, 9), True, "target"),
        ("discard-zero-changes", sb(5, 0), True, "source"),
        ("discard-zero-changes", sb(0, 0), True, "target"),  # tie: resolve-conflicts side loses
        ("discard-zero-changes", sb(0, 0), False, "source"),
        ("discard-zero-changes", sb(5, 9), True, "disconnect"),  # both changed: no auto-recovery
        ("discard-least-changes", sb(5, 9), True, "target"),
        ("discard-least-changes", sb(9, 5), True, "source"),
        ("discard-least-changes", sb(5, 5), True, "target"),
        ("discard-least-changes", sb(5, 5), False, "source"),
        ("discard-younger-primary", sb(9, 5, lpri=0, ppri=1), True, "target"),  # I'm younger
        ("discard-younger-primary", sb(5, 9, lpri=1, ppri=0), True, "source"),
        ("discard-younger-primary", sb(5, 9, lpri=1, ppri=1), True, "target"),  # -> least-chg
        ("discard-older-primary", sb(9, 5, lpri=0, ppri=1), True, "source"),
        ("discard-older-primary", sb(5, 9, lpri=1, ppri=0), True, "target"),
        ("discard-local", sb(9, 5), True, "target"),
        ("discard-remote", sb(5, 9), True, "source"),
    ],
)
def test_after_sb_0pri(policy: str, pair: tuple[Side, Side], rc: bool, action: str) -> None:
    local, peer = pair
    pol = Policy(after_sb_0pri=policy)
    out = sync_handshake(local, peer, pol, rc)
    assert out.split_brain and out.action == action
    assert "initial-split-brain" in out.handlers
    if action == "disconnect":
        assert "split-brain" in out.handlers and not out.auto_resolved
    else:
        assert out.auto_resolved and "split-brain" not in out.handlers
        if policy in ("discard-local", "discard-remote"):
            return  # asymmetric by design: the other node is configured the other way
        # the peer agrees: it takes the opposite role
        back = sync_handshake(peer, local, pol, not rc)
        assert back.action == {"source": "target", "target": "source"}[action]


def test_after_sb_1pri_discard_secondary_primary_wins_regardless_of_changes() -> None:
    local, peer = sb(1, 500, lrole="Primary")
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_1pri="discard-secondary")
    assert sync_handshake(local, peer, pol, True).action == "source"
    assert sync_handshake(peer, local, pol, False).action == "target"


@pytest.mark.parametrize(
    ("lbits", "pbits", "expect_local"),
    [(9, 5, "source"), (5, 9, "disconnect")],  # 0pri verdict must agree with the roles
)
def test_after_sb_1pri_consensus(lbits: int, pbits: int, expect_local: str) -> None:
    local, peer = sb(lbits, pbits, lrole="Primary")
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_1pri="consensus")
    assert sync_handshake(local, peer, pol, True).action == expect_local


def test_after_sb_1pri_call_pri_lost_demotes_losing_primary() -> None:
    local, peer = sb(5, 9, lrole="Primary")
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_1pri="call-pri-lost-after-sb")
    out = sync_handshake(local, peer, pol, True)
    assert out.demote and out.action == "target" and "pri-lost-after-sb" not in out.handlers


def test_after_sb_1pri_call_pri_lost_runs_handler_when_primary_is_busy() -> None:
    local, peer = sb(5, 9, lrole="Primary", l_can_demote=False)
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_1pri="call-pri-lost-after-sb")
    out = sync_handshake(local, peer, pol, True)
    assert out.action == "disconnect" and not out.demote
    assert out.handlers == ("initial-split-brain", "pri-lost-after-sb", "split-brain")


@pytest.mark.parametrize(
    ("policy", "lbits", "pbits", "can_demote", "action", "handlers"),
    [
        ("disconnect", 5, 9, True, "disconnect", ("initial-split-brain", "split-brain")),
        # the loser is Primary and rr-conflict is disconnect: it refuses to become target
        ("violently-as0p", 5, 9, True, "disconnect", ("initial-split-brain",)),
        ("call-pri-lost-after-sb", 9, 5, True, "source", ("initial-split-brain",)),
        ("call-pri-lost-after-sb", 5, 9, True, "target", ("initial-split-brain",)),
        ("call-pri-lost-after-sb", 5, 9, False, "disconnect",
         ("initial-split-brain", "pri-lost-after-sb", "split-brain")),
    ],
)
def test_after_sb_2pri(policy: str, lbits: int, pbits: int, can_demote: bool, action: str,
                       handlers: tuple[str, ...]) -> None:
    """The seed's 2pri policy decides the loser by after-sb-0pri (discard-least-changes)."""
    local, peer = sb(lbits, pbits, "Primary", "Primary", l_can_demote=can_demote)
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_2pri=policy)
    out = sync_handshake(local, peer, pol, True)
    assert (out.action, out.handlers) == (action, handlers)


def test_manual_recovery_with_discard_my_data() -> None:
    local, peer = sb(5, 9)
    local = Side(local.uuids, bits=5, discard_my_data=True)
    out = sync_handshake(local, peer, Policy(), True)
    assert out.action == "target" and "split-brain" not in out.handlers
    assert sync_handshake(peer, local, Policy(), False).action == "source"


def test_disk_state_overrides_uuids_inconsistent_becomes_target() -> None:
    out = sync_handshake(side(A, disk="Inconsistent"), side(A), Policy(), True)
    assert out.action == "target"
    out = sync_handshake(side(A), side(A, disk="Inconsistent"), Policy(), True)
    assert out.action == "source"


def test_primary_refuses_to_become_sync_target_rr_conflict() -> None:
    out = sync_handshake(side(A, role="Primary"), side(B, A | 1), Policy(), True)
    assert out.action == "disconnect"
    assert "I shall become SyncTarget, but I am primary!" in out.messages


def test_inconsistent_node_never_becomes_source() -> None:
    out = sync_handshake(side(B, A | 1, disk="Inconsistent"), side(A, disk="Inconsistent"),
                         Policy(), True)
    assert out.action == "disconnect"


def test_unrelated_data_disconnects() -> None:
    assert sync_handshake(side(B, D), side(C, E), Policy(), True).action == "disconnect"


def test_after_sb_2pri_violently_with_rr_conflict_violently_syncs_into_primary() -> None:
    local, peer = sb(5, 9, "Primary", "Primary")
    pol = Policy(after_sb_0pri="discard-least-changes", after_sb_2pri="violently-as0p",
                 rr_conflict="violently")
    assert sync_handshake(local, peer, pol, True).action == "target"
