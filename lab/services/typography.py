"""The page's typography in a configuration set: what a reader pasting the blog post gets.

Why a module of its own: the blog turned `"` into `“ ”`, `--` into `–`, runs of blanks into
no-break spaces, and lost a closing quote; none of that is visible in an editor, and each file's
reader does something different with it. Each problem says what that reader really does, as
checked against the real program (drbd-utils 9.22's `drbdadm -c FILE dump`, dnsmasq 2.90,
`sh` sourcing /etc/default/*, ddclient 3.10's `parse_assignment`, heartbeat's blank-split
readers). Pure: text in, problems out; comment lines are left alone (their readers skip them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

QUOTES = {"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "″": '"', "′": "'"}
DASHES = {"–": "--", "—": "--", "−": "-", "‐": "-", "‑": "-"}
SPACES = {"\u00a0": "no-break space", "\u2009": "thin space", "\u202f": "narrow no-break space",
          "\u200b": "zero-width space", "\ufeff": "byte-order mark"}

# What each file's reader does with a typographic character, checked against the program.
DRBDADM = ("drbdadm's parser refuses the file here (`Parse error: ';' expected, but got "
           "'\\xe2'`, from `drbdadm -c FILE dump`; it stops at the first such line), so "
           "no DRBD command works with this resource file")
SH_QUOTE = ("not a quote to sh: the variable's value starts with `{ch}` (`sh -c '. FILE; echo "
            "\"${var}\"'` prints it)")
SH_QUOTE_HARMLESS = (SH_QUOTE + "; harmless with Debian 12's ddclient 3.10: its init script "
                     "does not read run_daemon and its ppp hook treats anything but `true` in "
                     "run_ipup as false")
DNSMASQ_OPTS_DASH = ("`{word}` is not the option `--{rest}`: the init script passes it to dnsmasq, "
                     "which exits with `junk found in command line` (`dnsmasq --test "
                     "$DNSMASQ_OPTS`), so heartbeat's dnsmasq resource never starts")
SH_UNCLOSED = ("the quote opened here is never closed: once the page's `{ch}` is straightened, "
               "sh refuses the file (`Syntax error: Unterminated quoted string`, `sh -n FILE`) "
               "and the init script cannot read it")
DDCLIENT_QUOTE = ("ddclient's parser takes only `'` and `\"` as quotes: the value becomes "
                  "`{value}`, typographic quote included (ddclient 3.10 `parse_assignment`), "
                  "and the registrar rejects that password")
DDCLIENT_UNCLOSED = ("the quote is never closed: with `{ch}` straightened ddclient warns "
                     "`assignment to '{var}' ended with an unterminated quote` and takes the rest "
                     "of the line")
HOSTS_SPACE = ("{name} between the fields: dnsmasq reads the line as one token, logs `bad address "
               "at FILE line {line}` and loads no name from it (`read FILE - 0 names` for the "
               "page's file)")
BLANK_SPLIT = ("{what} where the page had {was}: {reader} splits lines on ASCII blanks only, so "
               "it becomes part of the word")

READERS = {
    "ha.cf": "heartbeat", "haresources": "heartbeat's ResourceManager", "authkeys": "heartbeat",
    "dnsmasq.conf": "dnsmasq", "ufw": "the shell (and ufw)",
}
SH_FILES = ("default-dnsmasq", "default-ddclient")


@dataclass(frozen=True)
class Issue:
    """One typographic defect: its line (1-based), level and what the reader does with it."""

    line: int
    level: str
    message: str


def _unbalanced(text: str) -> str:
    """The straight quote left open on a line once typographic quotes are straightened."""
    open_quote = ""
    for ch in text:
        q = QUOTES.get(ch, ch)
        if q in "\"'":
            open_quote = "" if open_quote == q else (open_quote or q)
    return open_quote


def _first(text: str, chars: dict[str, str]) -> str:
    return next((c for c in text if c in chars), "")


def check(name: str, text: str) -> list[Issue]:
    """Every typographic defect of the set's file `name` (fixture layout), line by line."""
    out: list[Issue] = []
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#") or line.isascii():
            continue
        out.extend(_line(name, no, line))
    return out


def _mapper_hint(word: str, dash: str) -> str:
    """What a /dev/mapper path with a dash where `--` was should read (VG-LV, `-` doubled)."""
    vg, _, rest = word[len("/dev/mapper/"):].partition(dash)
    vg = f"{vg}-{rest.rsplit('-', 1)[0]}" if "-" in rest else vg
    return (f"; device-mapper names volume group {vg}'s volumes "
            f"`{word.replace(dash, DASHES[dash])}` (a `-` in a VG name is doubled)")


def _line(name: str, no: int, line: str) -> Iterator[Issue]:
    quote, dash, space = _first(line, QUOTES), _first(line, DASHES), _first(line, SPACES)
    var = line.split("=", 1)[0].strip()
    if name == "drbd0.res":
        if quote:
            yield Issue(no, "error", f"typographic quote `{quote}`: {DRBDADM}")
        if dash:
            word = next(w for w in line.split() if dash in w).rstrip(";")
            yield Issue(no, "error", f"`{dash}` in `{word}` where the page had "
                        f"`{DASHES[dash]}`: {DRBDADM}"
                        + (_mapper_hint(word, dash) if word.startswith("/dev/mapper/") else ""))
        if space:
            yield Issue(no, "error", f"{SPACES[space]}: {DRBDADM}")
    elif name in SH_FILES:
        if quote:
            harmless = name == "default-ddclient"
            yield Issue(no, "warning" if harmless else "error",
                        (SH_QUOTE_HARMLESS if harmless else SH_QUOTE).format(ch=quote, var=var))
        if dash:
            word = next(w for w in line.replace("=", " ").split() if dash in w)
            word = word.lstrip("".join(QUOTES) + "\"'")
            rest = word.split(dash, 1)[1]
            yield Issue(no, "error", DNSMASQ_OPTS_DASH.format(word=word, rest=rest)
                        if "DNSMASQ_OPTS" in var else
                        f"`{dash}` where the page had `{DASHES[dash]}`: sh keeps it in {var}")
        if space:
            yield Issue(no, "error", f"{SPACES[space]}: sh does not split on it")
        if quote and (open_quote := _unbalanced(line)):
            yield Issue(no, "error", SH_UNCLOSED.format(ch=quote if QUOTES[quote] == open_quote
                                                        else open_quote))
    elif name == "ddclient.conf":
        if quote:
            value = line.split("=", 1)[1] if "=" in line else line
            yield Issue(no, "error", DDCLIENT_QUOTE.format(value=value.strip()))
            if _unbalanced(line):
                yield Issue(no, "warning", DDCLIENT_UNCLOSED.format(ch=quote, var=var))
        if dash or space:
            yield Issue(no, "error", f"`{dash or SPACES[space]}`: ddclient keeps it in the value")
    elif name == "banner_add_hosts":
        if space:
            yield Issue(no, "error", HOSTS_SPACE.format(name=SPACES[space], line=no))
        for ch in (quote, dash):
            if ch:
                yield Issue(no, "error", f"`{ch}` is not part of an address or a name: dnsmasq "
                            f"logs `bad address` or `bad name at FILE line {no}`")
    else:
        reader = READERS.get(name, "its reader")
        for ch, was in ((quote, quote and f"`{QUOTES[quote]}`"), (dash, dash and
                        f"`{DASHES[dash]}`"), (space, space and "a blank")):
            if ch:
                what = SPACES.get(ch, f"`{ch}`")
                yield Issue(no, "error", BLANK_SPLIT.format(what=what, was=was, reader=reader))
