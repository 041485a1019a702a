"""Unit tests: drbdadm's argument forms (incl. the seed's mangled dashes) and 8.4 outputs."""

import pytest

from lab.replicator.drbdadm import Usage, parse_args, role_of, status_text
from lab.replicator.resfile import parse

RES = parse("""resource drbd0 {
 on a { device /dev/drbd0; disk /d; address 10.0.0.1:7788; meta-disk internal; }
 on b { device /dev/drbd0; disk /d; address 10.0.0.2:7788; meta-disk internal; }
}""")["drbd0"]


@pytest.mark.parametrize(
    ("argv", "verb", "res", "flags"),
    [
        (["--", "--overwrite-data-of-peer", "primary", "all"], "primary", ["all"],
         {"overwrite-data-of-peer"}),
        (["—", "–overwrite-data-of-peer", "primary", "all"], "primary", ["all"],
         {"overwrite-data-of-peer"}),  # the seed as the blog printed it
        (["primary", "--force", "drbd0"], "primary", ["drbd0"], {"force"}),
        (["connect", "--discard-my-data", "drbd0"], "connect", ["drbd0"], {"discard-my-data"}),
        (["role", "drbd0"], "role", ["drbd0"], set()),
    ],
)
def test_parse_args(argv: list[str], verb: str, res: list[str], flags: set[str]) -> None:
    assert parse_args(argv) == (verb, res, flags)


def test_unknown_verb_and_missing_resource() -> None:
    with pytest.raises(Usage):
        parse_args(["frobnicate", "drbd0"])
    with pytest.raises(Usage):
        parse_args(["primary"])


def test_role_is_local_slash_peer() -> None:
    assert role_of({"role": "Primary", "peer_role": "Unknown"}) == "Primary/Unknown"


def test_status_text_connected_and_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "a")
    st = {"role": "Primary", "peer_role": "Secondary", "cstate": "Connected",
          "dstate": "UpToDate", "pdsk": "UpToDate"}
    assert status_text(RES, st) == ("drbd0 role:Primary\n  disk:UpToDate\n  b role:Secondary\n"
                                    "    replication:Established peer-disk:UpToDate\n\n")
    st = {**st, "cstate": "WFConnection", "peer_role": "Unknown", "pdsk": "DUnknown"}
    assert "b connection:Connecting" in status_text(RES, st)
    assert "No such resource" in status_text(RES, None)
