"""What the lab changes in the seed's configuration, as data, and its README table.

Why: the seed's configuration is the product's reference. Every difference between what the seed
prints and what a lab node runs must be visible and explained, never silent, so the renderer
returns a `Change` for each one and the README table is generated from those records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """One difference between the seed's file and the lab's rendered file.

    `file` is the node path (e.g. `/etc/ha.d/ha.cf`), `key` the setting or line it concerns,
    `finding` the id of the finding the change works around (empty if none).
    Secrets never appear in `lab_value`: it names how the value is made instead.
    """

    file: str
    key: str
    seed_value: str
    lab_value: str
    why: str
    finding: str = ""


def unique(changes: Iterable[Change]) -> list[Change]:
    """Changes without duplicates (both nodes report the same ones), first occurrence order."""
    seen: set[Change] = set()
    out: list[Change] = []
    for c in changes:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", "<br>")
    return f"`{text}`" if text and not text.startswith("(") else (text or "(none)")


def markdown_table(changes: Iterable[Change]) -> str:
    """The README table: file, setting, seed value → lab value, why (with the finding id)."""
    rows = [
        "| file | setting | seed | lab | why |",
        "|---|---|---|---|---|",
    ]
    for c in unique(changes):
        why = f"{c.why} ({c.finding})" if c.finding else c.why
        rows.append(
            f"| `{c.file}` | {c.key} | {_cell(c.seed_value)} | {_cell(c.lab_value)} | {why} |"
        )
    return "\n".join(rows) + "\n"
