"""Unit tests: the .res parser against the seed's own resource text."""

from pathlib import Path

import pytest

from lab.replicator.resfile import ResFileError, load_dir, parse

# Verbatim from the seed, lines 118-154: blog-mangled curly quotes and the en-dash kept.
SEED_RES = (Path(__file__).parents[2] / "fixtures/replicator/seed_drbd0.res").read_text()

STRAIGHT = SEED_RES.replace("“", '"').replace("”", '"')


def test_seed_resource_parses_with_curly_quotes_tolerated() -> None:
    res = parse(SEED_RES, "drbd0.res")["drbd0"]
    assert res.protocol == "C"
    assert res.startup["wfc-timeout"] == "10"
    assert res.disk["on-io-error"] == "detach"
    assert res.net["cram-hmac-alg"] == "sha256"
    assert res.net["shared-secret"] == "SOME_PASSWORD_STRING"
    assert res.net["after-sb-0pri"] == "discard-least-changes"
    assert res.net["after-sb-1pri"] == "discard-secondary"
    assert res.net["after-sb-2pri"] == "call-pri-lost-after-sb"
    assert res.handlers["split-brain"] == "/usr/lib/drbd/notify-split-brain.sh root"
    assert res.handlers["pri-lost-after-sb"].endswith("reboot -f")
    h1, h2 = res.host("lsvm1"), res.host("lsvm2")
    assert (h1.address, h1.port, h1.device, h1.minor) == ("192.168.1.6", 7788, "/dev/drbd0", 0)
    assert (h2.address, h2.port) == ("192.168.1.7", 7788)
    assert h1.disk == "/dev/mapper/lsvm1–vg2-drbd0"
    assert h1.meta_disk == "internal"
    assert res.peer_of("lsvm1") is h2


def test_straight_quotes_parse_the_same() -> None:
    assert parse(STRAIGHT, "x.res") == parse(SEED_RES, "x.res")


def test_strict_mode_rejects_curly_quotes_with_file_and_line() -> None:
    with pytest.raises(ResFileError) as e:
        parse(SEED_RES, "/etc/drbd.d/drbd0.res", strict=True)
    assert str(e.value).startswith("/etc/drbd.d/drbd0.res:12: curly quote")


def test_defaults_from_drbd_84() -> None:
    res = parse(STRAIGHT, "x.res")["drbd0"]
    assert res.timeout_s == 6.0
    assert res.ko_count == 7
    assert res.ping_timeout_s == 0.5
    assert res.ping_int_s == 10.0
    assert res.net_opt("rr-conflict") == "disconnect"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("resource r {\nprotocol C\n}", "x.res:3: missing ';'"),
        ("resource r {\n net {\n after-sb-0pri bogus;\n }\n}", "x.res:1: after-sb-0pri"),
        ("resource r {\n on a { device /dev/drbd0; disk /d; meta-disk internal; }\n}",
         "x.res:2: on a: missing 'address'"),
        ("resource r {\n on a {\n device /dev/drbd0;\n disk /d;\n address 1.2.3.4;\n"
         " meta-disk internal; } }", "x.res:5: address '1.2.3.4' is not IP:PORT"),
        ("resource r {\n startup { wfc-timeout 10;\n", "x.res:2: unterminated"),
        ("frobnicate {}", "x.res:1: unknown top-level keyword"),
        ('resource r {\n handlers { split-brain "oops;\n}', "x.res:2: unterminated string"),
        ("resource r {\n protocol D;\n}", "x.res:1: protocol 'D'"),
    ],
)
def test_errors_name_file_and_line(text: str, where: str) -> None:
    with pytest.raises(ResFileError) as e:
        parse(text, "x.res")
    assert str(e.value).startswith(where), str(e.value)


def test_load_dir_merges_common_and_minor_syntax(tmp_path: Path) -> None:
    (tmp_path / "global_common.conf").write_text(
        "global { usage-count no; }\ncommon { net { timeout 30; ko-count 2; } }\n"
    )
    (tmp_path / "r0.res").write_text(
        "resource r0 {\n device /dev/drbd_r0 minor 3; disk /img; meta-disk internal;\n"
        " on a { address ipv4 10.0.0.1:7789; }\n on b { address 10.0.0.2:7789; }\n}\n"
    )
    res = load_dir(tmp_path)["r0"]
    assert res.timeout_s == 3.0 and res.ko_count == 2
    assert res.host("a").minor == 3 and res.host("b").address == "10.0.0.2"
