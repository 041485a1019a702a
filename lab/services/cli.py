"""Subcommands of `lab` owned by the services layer: `lint`, `changes`, `findings`, `fw`.

Why here: the lead's `lab/cli.py` imports `register()` from this module when it exists, so the
services layer adds its commands without editing the main CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lab.services.changes import markdown_table
from lab.services.findings import markdown_list
from lab.services.lint import has_errors, lint
from lab.services.profiles import ProfileError, load_profile
from lab.services.render import SEED_DIR, RenderOptions, all_changes, load_seed, render_pair
from lab.services.secrets import generate
from lab.topology import TopologyError, load_topology

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[2] / "fixtures" / "topology.toml"


def cmd_lint(args: argparse.Namespace) -> int:
    """Exit 0 when clean or warnings only (each warning is something the lab works around or
    that is harmless here), 2 on any error or bad input, as `lab up` refuses it (an SLA file given
    with --sla that has problems is bad input: every problem is printed, nothing else runs)."""
    if args.sla is not None and not _sla_ok(Path(args.sla)):
        return 2
    try:
        topology = load_topology(args.topology)
        profile = load_profile(args.profile)
    except (TopologyError, ProfileError) as exc:
        print(exc, file=sys.stderr)
        return 2
    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 2
    problems = lint(directory, topology, profile,
                    options=RenderOptions(keep_findings=frozenset(args.keep_finding)))
    for p in problems:
        print(p)
    errors = sum(p.level == "error" for p in problems)
    print(f"{directory}: {errors} error(s), {len(problems) - errors} warning(s)", file=sys.stderr)
    return 2 if has_errors(problems) else 0


def _sla_ok(path: Path) -> bool:
    """Check an SLA file against the scenarios under scenarios/ and the profiles."""
    from lab.sla import SCENARIOS_DIR, SlaError, load_sla, scenario_names, scenario_sources

    try:
        found = load_sla(path, scenarios=scenario_names(scenario_sources([SCENARIOS_DIR])))
    except (SlaError, ProfileError) as exc:
        for problem in getattr(exc, "problems", [str(exc)]):
            print(problem, file=sys.stderr)
        return False
    bounds = sum(len(s.shared) + sum(map(len, s.by_profile.values()))
                 for s in found.scenarios.values())
    print(f"{path}: {len(found.scenarios)} scenarios, {bounds} bounds, ok", file=sys.stderr)
    return True


def cmd_changes(args: argparse.Namespace) -> int:
    """Print the README table of what the lab changes in the seed's configuration."""
    profile = load_profile(args.profile)
    configs = render_pair(load_seed(Path(args.dir)), profile, generate())
    sys.stdout.write(markdown_table(all_changes(configs, profile)))
    return 0


def cmd_fw(args: argparse.Namespace) -> int:
    """Print a server's active firewall rules with their counters (inside its own netns)."""
    from rich.console import Console

    from lab.lab import Lab, resolve_lab_name
    from lab.services import firewall

    lab = Lab.attach(resolve_lab_name(args.name))
    if args.node not in lab.nodes:
        print(f"lab: lab {lab.name} has no node {args.node!r}", file=sys.stderr)
        return 2
    node = lab[args.node]
    if node.state != "running":
        print(f"lab: {node.name} is {node.state}", file=sys.stderr)
        return 1
    text = firewall.listing(node)
    if not text:
        print(f"lab: {node.name} has no `inet {firewall.TABLE}` table (the seed's firewall runs "
              "on its servers only)", file=sys.stderr)
        return 1
    if args.raw:
        sys.stdout.write(text)
    else:
        Console().print(firewall.table(node.name, firewall.counters(text)))
    return 0


def cmd_findings(_args: argparse.Namespace) -> int:
    sys.stdout.write(markdown_list())
    return 0


def register(subparsers: Any) -> None:
    """Add `lint`, `changes`, `fw` and `findings` to the `lab` command's subparsers."""
    p = subparsers.add_parser("lint", help="check a configuration set before anything starts")
    p.add_argument("dir", nargs="?", default=str(SEED_DIR), help="fixture-layout directory")
    p.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    p.add_argument("--profile", default="seed")
    p.add_argument("--keep-finding", action="append", default=[], metavar="ID",
                   help="lint without the renderer's workaround for this finding")
    p.add_argument("--sla", metavar="FILE", default=None,
                   help="check this SLA file first (e.g. fixtures/slas.toml): exit 2 with "
                        "its problems")
    p.set_defaults(handler=cmd_lint)
    p = subparsers.add_parser("changes", help="what the lab changes in the seed (markdown)")
    p.add_argument("dir", nargs="?", default=str(SEED_DIR))
    p.add_argument("--profile", default="seed")
    p.set_defaults(handler=cmd_changes)
    p = subparsers.add_parser("fw", help="a server's firewall rules and their counters")
    p.add_argument("node")
    p.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
    p.add_argument("--raw", action="store_true", help="nft's own listing")
    p.set_defaults(handler=cmd_fw)
    p = subparsers.add_parser("findings", help="what misbehaves in the seed (markdown)")
    p.set_defaults(handler=cmd_findings)
