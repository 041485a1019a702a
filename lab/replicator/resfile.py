"""Parser for DRBD 8.4 resource files (``/etc/drbd.d/*.res``) in the seed's syntax.

Pure: text in, immutable model out. Errors are ``ResFileError`` whose message reads
``file:line: problem`` so an operator can jump straight to the offending line.

Curly quotes: the seed was published on a blog that turned straight quotes into typographic
ones (``“...“``, ``” ...”``). DRBD itself rejects them. We *tolerate* them by default (any of
``“ ” „`` opens or closes a string, exactly like ``"``), because the seed is the source of truth
for this lab and a user pasting it should get a working resource; ``strict=True`` turns them
into a ``file:line: curly quote ...`` error, as real drbdadm would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

CURLY_QUOTES = "“”„"
MAX_MINOR = 2**20 - 1  # DRBD's minor numbers (drbd.conf(5): device minor 0-1048575)

# DRBD 8.4 defaults (drbd.conf(5), 8.4): times are in tenths of a second where DRBD says so.
NET_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "timeout": "60",  # 6 s
        "connect-int": "10",  # s
        "ping-int": "10",  # s
        "ping-timeout": "5",  # 0.5 s
        "ko-count": "7",
        "after-sb-0pri": "disconnect",
        "after-sb-1pri": "disconnect",
        "after-sb-2pri": "disconnect",
        "rr-conflict": "disconnect",
        "allow-two-primaries": "no",
    }
)

AFTER_SB_0PRI = frozenset(
    {
        "disconnect",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-zero-changes",
        "discard-least-changes",
        "discard-local",
        "discard-remote",
    }
)
AFTER_SB_1PRI = frozenset(
    {"disconnect", "consensus", "violently-as0p", "discard-secondary", "call-pri-lost-after-sb"}
)
AFTER_SB_2PRI = frozenset({"disconnect", "violently-as0p", "call-pri-lost-after-sb"})


class ResFileError(ValueError):
    """A resource file problem, formatted ``file:line: problem``."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "{", "}", ";"
    text: str
    line: int


@dataclass(frozen=True)
class Host:
    """One ``on HOST { ... }`` section: where this node's copy lives and listens."""

    name: str
    device: str
    minor: int
    disk: str
    address: str
    port: int
    meta_disk: str


@dataclass(frozen=True)
class Resource:
    """One ``resource NAME { ... }``; sections are read-only string maps."""

    name: str
    protocol: str
    startup: Mapping[str, str]
    disk: Mapping[str, str]
    handlers: Mapping[str, str]
    net: Mapping[str, str]
    hosts: Mapping[str, Host]
    file: str = ""
    line: int = 0
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise ResFileError(
                self.file, self.line, f"resource {self.name}: no 'on {name}' section"
            ) from None

    def peer_of(self, name: str) -> Host:
        others = [h for n, h in self.hosts.items() if n != name]
        if len(others) != 1:
            raise ResFileError(
                self.file, self.line, f"resource {self.name}: expected exactly one peer of {name}"
            )
        return others[0]

    def net_opt(self, key: str) -> str:
        return self.net.get(key, NET_DEFAULTS.get(key, ""))

    @property
    def timeout_s(self) -> float:
        """``timeout`` is in tenths of a second."""
        return int(self.net_opt("timeout")) / 10.0

    @property
    def ping_timeout_s(self) -> float:
        return int(self.net_opt("ping-timeout")) / 10.0

    @property
    def ping_int_s(self) -> float:
        return float(self.net_opt("ping-int"))

    @property
    def connect_int_s(self) -> float:
        return float(self.net_opt("connect-int"))

    @property
    def ko_count(self) -> int:
        return int(self.net_opt("ko-count"))


_WORD = re.compile(r"[^\s{};\"#“”„]+")


def tokenize(text: str, file: str, strict: bool = False) -> Iterator[Token]:
    """Split resource-file text into tokens, tracking line numbers."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield Token(c, c, line)
            i += 1
        elif c == '"' or c in CURLY_QUOTES:
            if c in CURLY_QUOTES and strict:
                raise ResFileError(file, line, f"curly quote {c!r}: use straight quotes (\")")
            start_line = line
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise ResFileError(file, start_line, "unterminated string")
                d = text[j]
                if d == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if d == '"' or d in CURLY_QUOTES:
                    if d in CURLY_QUOTES and strict:
                        raise ResFileError(file, line, f"curly quote {d!r}: use straight quotes")
                    break
                if d == "\n":
                    line += 1
                buf.append(d)
                j += 1
            yield Token("string", "".join(buf), start_line)
            i = j + 1
        else:
            m = _WORD.match(text, i)
            if m is None:  # pragma: no cover - _WORD matches any other character
                raise ResFileError(file, line, f"unexpected character {c!r}")
            yield Token("word", m.group(0), line)
            i = m.end()


class _Parser:
    def __init__(self, tokens: list[Token], file: str) -> None:
        self.toks = tokens
        self.pos = 0
        self.file = file

    def err(self, problem: str, tok: Token | None = None) -> ResFileError:
        if tok is None:
            tok = self.toks[self.pos] if self.pos < len(self.toks) else None
        line = tok.line if tok else (self.toks[-1].line if self.toks else 1)
        return ResFileError(self.file, line, problem)

    def opens_section(self, tok: Token) -> bool:
        """``disk`` is both a section (``disk { ... }``) and an option (``disk /dev/x;``)."""
        nxt = self.toks[self.pos + 1] if self.pos + 1 < len(self.toks) else None
        return (
            tok.kind == "word" and tok.text in _FLAT_SECTIONS and nxt is not None
            and nxt.kind == "{"
        )

    def peek(self) -> Token | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.err(f"unexpected end of file, expected {what}")
        self.pos += 1
        return tok

    def expect(self, kind: str, what: str) -> Token:
        tok = self.next(what)
        if tok.kind != kind:
            raise self.err(f"expected {what}, got {tok.text!r}", tok)
        return tok

    def value_token(self, what: str) -> Token:
        tok = self.next(what)
        if tok.kind not in ("word", "string"):
            raise self.err(f"expected {what}, got {tok.text!r}", tok)
        return tok

    def statement(self) -> tuple[Token, list[Token]]:
        """``key value... ;`` — returns the key token and its values."""
        key = self.expect("word", "an option name")
        values: list[Token] = []
        while True:
            tok = self.next("';'")
            if tok.kind == ";":
                return key, values
            if tok.kind in ("{", "}"):
                raise self.err(f"missing ';' after option {key.text!r}", tok)
            values.append(tok)

    def section(self, name: str) -> dict[str, str]:
        """``{ key value; ... }`` with flat options, values joined by spaces."""
        self.expect("{", f"'{{' after {name}")
        out: dict[str, str] = {}
        while True:
            tok = self.peek()
            if tok is None:
                raise self.err(f"unterminated section {name!r}")
            if tok.kind == "}":
                self.pos += 1
                return out
            key, values = self.statement()
            out[key.text] = " ".join(v.text for v in values) if values else "yes"


_FLAT_SECTIONS = ("startup", "disk", "handlers", "net", "options", "syncer")


def _parse_address(value: str) -> tuple[str, int]:
    parts = value.split()
    if len(parts) == 2 and parts[0] in ("ipv4", "ipv6"):
        value = parts[1]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        raise ValueError(f"address {value!r} is not IP:PORT")
    if not 0 < int(port) < 65536:
        raise ValueError(f"address {value!r}: port {int(port)} is not 1-65535")
    return host.strip("[]"), int(port)


def _parse_device(value: str) -> tuple[str, int]:
    parts = value.split()
    path = parts[0]
    if len(parts) == 3 and parts[1] == "minor" and parts[2].isascii() and parts[2].isdigit():
        minor = int(parts[2])
    else:
        m = re.fullmatch(r"/dev/drbd([0-9]+)", path)
        if m is None:
            raise ValueError(f"device {value!r}: cannot tell the minor (use 'device PATH minor N')")
        minor = int(m.group(1))
    if minor > MAX_MINOR:
        raise ValueError(f"device {value!r}: minor {minor} is above DRBD's {MAX_MINOR}")
    return path, minor


def _parse_resource(p: _Parser, common: Mapping[str, Mapping[str, str]]) -> Resource:
    name_tok = p.value_token("a resource name")
    p.expect("{", "'{' after resource name")
    sections: dict[str, dict[str, str]] = {s: dict(common.get(s, {})) for s in _FLAT_SECTIONS}
    shared: dict[str, tuple[str, int]] = {}
    hosts_raw: list[tuple[Token, dict[str, tuple[str, int]]]] = []
    protocol = common.get("", {}).get("protocol", "C")
    while True:
        tok = p.peek()
        if tok is None:
            raise p.err(f"unterminated resource {name_tok.text!r}")
        if tok.kind == "}":
            p.pos += 1
            break
        if p.opens_section(tok):
            p.pos += 1
            sections[tok.text].update(p.section(tok.text))
            continue
        if tok.kind == "word" and tok.text == "on":
            p.pos += 1
            host_tok = p.value_token("a host name after 'on'")
            p.expect("{", "'{' after host name")
            opts: dict[str, tuple[str, int]] = {}
            while True:
                t = p.peek()
                if t is None:
                    raise p.err(f"unterminated 'on {host_tok.text}' section")
                if t.kind == "}":
                    p.pos += 1
                    break
                key, values = p.statement()
                opts[key.text] = (" ".join(v.text for v in values), key.line)
            hosts_raw.append((host_tok, opts))
            continue
        key, values = p.statement()
        if key.text == "protocol":
            protocol = " ".join(v.text for v in values)
        else:
            shared[key.text] = (" ".join(v.text for v in values), key.line)

    if protocol not in ("A", "B", "C"):
        raise ResFileError(p.file, name_tok.line, f"protocol {protocol!r}: expected A, B or C")
    net = sections["net"]
    for opt, allowed in (
        ("after-sb-0pri", AFTER_SB_0PRI),
        ("after-sb-1pri", AFTER_SB_1PRI),
        ("after-sb-2pri", AFTER_SB_2PRI),
    ):
        if opt in net and net[opt] not in allowed:
            raise ResFileError(
                p.file, name_tok.line, f"{opt} {net[opt]!r}: expected one of {sorted(allowed)}"
            )
    if "shared-secret" in net and "cram-hmac-alg" not in net:
        raise ResFileError(p.file, name_tok.line, "shared-secret without cram-hmac-alg")

    hosts: dict[str, Host] = {}
    for host_tok, opts in hosts_raw:
        merged = {**shared, **opts}
        for required in ("device", "disk", "address", "meta-disk"):
            if required not in merged:
                raise ResFileError(
                    p.file, host_tok.line, f"on {host_tok.text}: missing '{required}'"
                )
        try:
            device, minor = _parse_device(merged["device"][0])
        except ValueError as e:
            raise ResFileError(p.file, merged["device"][1], str(e)) from None
        try:
            addr, port = _parse_address(merged["address"][0])
        except ValueError as e:
            raise ResFileError(p.file, merged["address"][1], str(e)) from None
        if host_tok.text in hosts:
            raise ResFileError(p.file, host_tok.line, f"duplicate 'on {host_tok.text}'")
        hosts[host_tok.text] = Host(
            name=host_tok.text,
            device=device,
            minor=minor,
            disk=merged["disk"][0],
            address=addr,
            port=port,
            meta_disk=merged["meta-disk"][0],
        )
    if len(hosts) != 2:
        raise ResFileError(
            p.file,
            name_tok.line,
            f"resource {name_tok.text}: need 2 'on' sections, got {len(hosts)}",
        )
    return Resource(
        name=name_tok.text,
        protocol=protocol,
        startup=MappingProxyType(sections["startup"]),
        disk=MappingProxyType(sections["disk"]),
        handlers=MappingProxyType(sections["handlers"]),
        net=MappingProxyType(net),
        hosts=MappingProxyType(hosts),
        file=p.file,
        line=name_tok.line,
        options=MappingProxyType(sections["options"]),
    )


def parse_with_common(
    text: str,
    file: str = "<string>",
    strict: bool = False,
    common: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, Resource], dict[str, dict[str, str]]]:
    """Parse a whole file (``global``, ``common``, ``include``, ``resource``); also return the
    ``common`` sections so ``global_common.conf`` can feed the ``.res`` files."""
    p = _Parser(list(tokenize(text, file, strict)), file)
    shared: dict[str, dict[str, str]] = {k: dict(v) for k, v in (common or {}).items()}
    out: dict[str, Resource] = {}
    while (tok := p.peek()) is not None:
        if tok.kind != "word":
            raise p.err(f"unexpected {tok.text!r} at top level", tok)
        p.pos += 1
        if tok.text == "resource":
            res = _parse_resource(p, shared)
            if res.name in out:
                raise ResFileError(file, res.line, f"duplicate resource {res.name!r}")
            out[res.name] = res
        elif tok.text == "global":
            p.section("global")
        elif tok.text == "common":
            p.expect("{", "'{' after common")
            while (t := p.peek()) is not None and t.kind != "}":
                if p.opens_section(t):
                    p.pos += 1
                    shared.setdefault(t.text, {}).update(p.section(t.text))
                else:
                    key, values = p.statement()
                    shared.setdefault("", {})[key.text] = " ".join(v.text for v in values)
            p.expect("}", "'}' closing common")
        elif tok.text == "include":
            p.value_token("a path after include")
            p.expect(";", "';' after include")
        else:
            raise p.err(f"unknown top-level keyword {tok.text!r}", tok)
    return out, shared


def parse(
    text: str,
    file: str = "<string>",
    strict: bool = False,
    common: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Resource]:
    """Parse one file's text into its resources."""
    return parse_with_common(text, file, strict, common)[0]


def load_dir(directory: Path | str = "/etc/drbd.d", strict: bool = False) -> dict[str, Resource]:
    """Load ``global_common.conf`` (if any) then every ``*.res`` in ``directory``."""
    d = Path(directory)
    common: dict[str, dict[str, str]] = {}
    gc = d / "global_common.conf"
    if gc.exists():
        _, common = parse_with_common(gc.read_text(), str(gc), strict)
    out: dict[str, Resource] = {}
    for f in sorted(d.glob("*.res")):
        for name, res in parse(f.read_text(), str(f), strict, common).items():
            if name in out:
                raise ResFileError(str(f), res.line, f"resource {name!r} also in {out[name].file}")
            out[name] = res
    return out
