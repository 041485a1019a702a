"""`make bench`: how fast and how heavy a lab is, measured, never asserted.

Numbers go to bench/results.json (and a table on the terminal). Ratios are computed from numbers
measured in the same run on the same machine, never against remembered values. Other layers add
their own sections through a `run_all() -> dict` in `lab.<layer>.bench`.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lab import pool_bench, walk
from lab.lab import Lab
from lab.state import lab_cgroups, teardown

SECTIONS = ("lab.replicator.bench", "lab.services.bench", "lab.probes.bench")
LAB_CLI = [sys.executable, "-m", "lab.cli"]


def lab_command() -> list[str]:
    """The `lab` console script a user runs (its own interpreter start and imports included),
    or `python -m lab.cli` where it is not installed."""
    script = Path(sys.executable).parent / "lab"
    return [str(script)] if script.exists() else LAB_CLI


def _name(tag: str) -> str:
    return f"b{os.getpid() % 100000}{tag}"


def bench_up_down(repeats: int = 5) -> dict[str, Any]:
    ups, downs = [], []
    for i in range(repeats):
        lab = Lab.create(_name(f"u{i}"), stack="none")
        t0 = time.monotonic()
        lab.up()
        t1 = time.monotonic()
        lab.down()
        t2 = time.monotonic()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    return {"repeats": repeats, "up_s_median": statistics.median(ups),
            "down_s_median": statistics.median(downs), "up_s_all": ups, "down_s_all": downs}


def _status_fields(pid: int, *fields: str) -> dict[str, int] | None:
    """Numeric fields of /proc/<pid>/status, or None if the process exited meanwhile."""
    text = walk.read_text(Path(f"/proc/{pid}/status"))
    if text is None:
        return None
    values = dict.fromkeys(fields, 0)
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in values and rest.split():
            values[key] = int(rest.split()[0])
    return values


def bench_footprint(settle_s: float = 2.0) -> dict[str, Any]:
    lab = Lab.create(_name("f"), stack="none")
    lab.up()
    try:
        time.sleep(settle_s)
        # every process the lab owns: nodes, switch and the power agent; one that exits
        # between the cgroup listing and its /proc read is not counted (nor its memory)
        pids = [pid for cgroup in lab_cgroups(lab.name) for pid in cgroup.pids()]
        found = [v for v in (_status_fields(p, "VmRSS", "VmHWM") for p in pids) if v is not None]
        return {"processes": len(found), "rss_kib": sum(v["VmRSS"] for v in found),
                "peak_rss_kib": sum(v["VmHWM"] for v in found), "nodes": len(lab.nodes)}
    finally:
        lab.down()


def bench_parallel() -> dict[str, Any]:
    names = [_name("pa"), _name("pb")]

    def up(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*LAB_CLI, "up", "--name", name, "--stack", "none"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        for name in names:
            if up(name).wait() != 0:
                raise RuntimeError(f"lab up {name} failed")
        sequential = time.monotonic() - t0
        for name in names:
            teardown(name)
        t0 = time.monotonic()
        procs = [up(name) for name in names]
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError("parallel lab up failed")
        parallel = time.monotonic() - t0
    finally:
        for name in names:
            teardown(name)
    return {"two_labs_sequential_s": sequential, "two_labs_parallel_s": parallel,
            "parallel_over_sequential": parallel / sequential}


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return time.monotonic() - started


def bench_peer(repeats: int = 5) -> dict[str, Any]:
    """The bare lab through the CLI and in-process, beside Mininet building six hosts on one
    Linux bridge (lab/mininet_bench.py), taken in turn in one run: ratios of medians."""
    from lab import mininet_bench
    cli = lab_command()
    name = _name("cli")
    result: dict[str, Any] = {}
    up_cli, down_cli, up_in, down_in = [], [], [], []
    runs: list[dict[str, Any]] = []
    missing = mininet_bench.available()
    before = mininet_bench.root_namespace() if missing is None else None
    for i in range(repeats):
        up_cli.append(_timed([*cli, "up", "--stack", "none", "--profile", "fast",
                              "--name", name]))
        down_cli.append(_timed([*cli, "down", "--name", name]))
        lab = Lab.create(_name(f"i{i}"), stack="none")
        t0 = time.monotonic()
        lab.up()
        t1 = time.monotonic()
        lab.down()
        up_in.append(t1 - t0)
        down_in.append(time.monotonic() - t1)
        if missing is None:
            runs.append(mininet_bench.run_once())
    med = statistics.median
    result["lab"] = {"up_cli_s_median": med(up_cli), "down_cli_s_median": med(down_cli),
                     "up_inprocess_s_median": med(up_in),
                     "down_inprocess_s_median": med(down_in),
                     "up_cli_s_all": up_cli, "down_cli_s_all": down_cli, "repeats": repeats}
    if missing is not None or before is None:
        result["mininet"] = {"skipped": missing}
        return result
    after = mininet_bench.root_namespace()
    build = med([r["build_s"] for r in runs])
    stop = med([r["stop_s"] for r in runs])
    start_process = med([r["process_s"] - r["stop_s"] for r in runs])
    result["mininet"] = {
        "hosts": mininet_bench.HOSTS, "switch": "LinuxBridge, no controller",
        "build_s_median": build, "stop_s_median": stop,
        "import_s_median": med([r["import_s"] for r in runs]),
        "process_s_median": med([r["process_s"] for r in runs]),
        "start_process_s_median": start_process,
        "root_namespace_changes": mininet_bench.changed(before, after),
    }
    result["ratios"] = {
        # whole processes: `lab up` vs a python that imports Mininet and builds the network
        "lab_up_cli_over_mininet_start_process": med(up_cli) / start_process,
        # teardown: `lab down` (a whole process) vs Mininet's stop() inside its process
        "lab_down_cli_over_mininet_stop": med(down_cli) / stop,
        "lab_up_inprocess_over_mininet_build": med(up_in) / build,
        "lab_down_inprocess_over_mininet_stop": med(down_in) / stop,
    }
    return result


def bench_backends(repeats: int = 3) -> dict[str, Any]:
    """Both node backends in the same run: a bare lab's `lab up`/`lab down` through the CLI
    (medians of `repeats`) and the seed's pair from `lab up` to ready (one run each, fast
    profile). The docker backend is skipped, with the reason, where it cannot run."""
    cli = lab_command()
    result: dict[str, Any] = {}
    for backend in ("namespace", "docker"):
        missing = _backend_missing(backend)
        if missing:
            result[backend] = {"skipped": missing}
            continue
        name = _name(backend[0])
        ups, downs = [], []
        for _ in range(repeats):
            ups.append(_timed([*cli, "up", "--stack", "none", "--profile", "fast",
                               "--backend", backend, "--name", name]))
            downs.append(_timed([*cli, "down", "--name", name]))
        ready = _timed([*cli, "up", "--stack", "seed", "--profile", "fast",
                        "--backend", backend, "--name", name])
        seed_down = _timed([*cli, "down", "--name", name])
        result[backend] = {"bare_up_cli_s_median": statistics.median(ups),
                           "bare_down_cli_s_median": statistics.median(downs),
                           "seed_up_to_ready_s": ready, "seed_down_s": seed_down,
                           "bare_up_cli_s_all": ups, "bare_down_cli_s_all": downs}
    return result


def _backend_missing(backend: str) -> str | None:
    """Why `backend` cannot run here, or None."""
    if backend == "namespace":
        return None
    try:
        import docker.errors
    except ImportError as exc:
        return f"no docker SDK: {exc}"
    from lab import dockerd
    from lab.docker_backend import DEFAULT_IMAGE
    try:
        client = dockerd.client()
        try:
            client.images.get(os.environ.get("LAB_IMAGE") or DEFAULT_IMAGE)
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        return "no node image (lab image build)"
    except Exception as exc:  # no engine: say why, measure the rest
        return f"{type(exc).__name__}: {exc}"
    return None


def compile_bytecode() -> bool:
    """Write the package's bytecode before anything is timed, as installing it would.

    A process timed through the CLI imports ~150 modules; without an up-to-date `.pyc` each
    changed one is compiled again on every start (~60 ms for 30 modules here), and nothing
    rewrites the cache when the environment says PYTHONDONTWRITEBYTECODE. A user's installed
    package has its bytecode; the bench measures that, whatever the shell it runs from."""
    return bool(compileall.compile_dir(str(Path(__file__).resolve().parent), quiet=1))


def run_all(only: list[str] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bytecode_compiled": compile_bytecode(),
    }
    plan = {"lab.up_down": bench_up_down, "lab.peer": bench_peer,
            "lab.footprint": bench_footprint, "lab.parallel": bench_parallel,
            "lab.pool": pool_bench.run_all, "lab.backends": bench_backends}
    for key, func in plan.items():
        if not only or any(key.startswith(o) for o in only):
            results[key] = func()
    for module_name in SECTIONS:
        section = module_name.split(".")[1]
        if only and not any(section.startswith(o) for o in only):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        results[section] = module.run_all()
    return results


def flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested sections as dotted metric names (lists are left to the JSON file)."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        elif not isinstance(value, list):
            rows.append((name, value))
    return rows


def print_table(results: dict[str, Any]) -> None:
    table = Table(title="hapair-lab benchmarks")
    table.add_column("benchmark")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right")
    for section, values in results.items():
        if not isinstance(values, dict) or section == "machine":
            continue
        for key, value in flatten(values):
            table.add_row(section, key, f"{value:.4g}" if isinstance(value, float)
                          else str(value))
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench")
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--only", nargs="*", help="sections to run, e.g. lab replicator")
    args = parser.parse_args()
    results = run_all(args.only)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print_table(results)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
