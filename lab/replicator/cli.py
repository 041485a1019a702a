"""``lab drbd``: the replicated disk's state on every node, for people and scripts.

Registered into the ``lab`` command by lab/cli.py (``register(subparsers)``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lab.replicator import service


def cmd_drbd(args: argparse.Namespace) -> int:
    from lab.lab import Lab, resolve_lab_name

    lab = Lab.attach(resolve_lab_name(args.name))
    out: dict[str, Any] = {"mode": service.mode(), "nodes": {}}
    for node in lab:
        if node.state != "running":
            continue
        try:
            service.resource(node, args.resource)
        except (KeyError, OSError):
            continue  # this node has no such resource
        st = service.full_status(node, args.resource) or {}
        out["nodes"][node.name] = {k: st.get(k) for k in (
            "role", "peer_role", "cstate", "dstate", "pdsk", "out_of_sync_kib")} if st else {
            "role": "Unconfigured"}
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print(f"mode: {out['mode']}")
    for name, st in out["nodes"].items():
        print(f"{name:8} {st.get('role', '?')}/{st.get('peer_role', '?')} "
              f"{st.get('cstate', '')} {st.get('dstate', '')}/{st.get('pdsk', '')} "
              f"oos:{st.get('out_of_sync_kib', '')}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.replicator import bench

    print(json.dumps(bench.run_all(lab_name=args.lab_name, size_mib=args.size_mib,
                                   n=args.samples), indent=2))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("drbd", help="the replicated disk's roles and states per node")
    p.add_argument("--name", help="which lab (default: $LAB_NAME, or the only one up)")
    p.add_argument("--resource", default="drbd0")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_drbd)
    p = subparsers.add_parser("drbd-bench", help="measure the replicated disk on a fresh lab")
    p.add_argument("--lab-name", default="rbench")
    p.add_argument("--size-mib", type=int, default=250)
    p.add_argument("--samples", type=int, default=300)
    p.set_defaults(handler=cmd_bench)
