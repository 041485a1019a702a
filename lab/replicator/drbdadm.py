"""``drbdadm``, DRBD 8.4 flavour, driving the userspace replicator.

Installed inside each node as ``/usr/sbin/drbdadm`` (= ``/sbin/drbdadm``, what heartbeat's
``drbddisk`` calls). It reads ``/etc/drbd.d/*.res``, starts the per-resource daemon (``up``,
``attach``) and sends it commands over its control socket. Output and exit codes follow DRBD
8.4 where scripts depend on them: ``role`` prints ``Primary/Secondary``, a refused state change
prints ``0: State change failed: (-12) Device is held open by someone`` plus the
``Command 'drbdsetup-84 ...' terminated with exit code 11`` line and exits 11, and a resource
that is down reads ``Unconfigured`` (which ``drbddisk status`` reports as stopped).

The seed's blog-mangled ``drbdadm — –overwrite-data-of-peer primary all`` is accepted: an
em dash alone means ``--`` and a leading en dash means ``--``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.replicator.metadata import Metadata, MetadataError
from lab.replicator.paths import RUN_DIR, run_paths
from lab.replicator.resfile import ResFileError, Resource, load_dir
from lab.wait import WaitTimeout, wait_for

CONFIG_DIR = os.environ.get("DRBD_CONFIG_DIR", "/etc/drbd.d")
LOG_DIR = "/var/log"

VERBS = ("create-md", "up", "down", "attach", "detach", "connect", "disconnect", "primary",
         "secondary", "role", "cstate", "dstate", "status", "sh-dev", "sh-minor", "invalidate",
         "verify", "resize",
         "sh-resources", "lab-status", "lab-io-error", "dump")


class Usage(Exception):
    pass


def normalize(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        if a == "—":
            a = "--"
        elif a.startswith("–"):
            a = "--" + a.lstrip("–")
        out.append(a)
    return out


def parse_args(argv: list[str]) -> tuple[str, list[str], set[str]]:
    """``[opts] [--] [--flags] VERB [--flags] RES...`` -> (verb, resources, flags)."""
    flags: set[str] = set()
    words: list[str] = []
    for a in normalize(argv):
        if a == "--":
            continue
        if a.startswith("-"):
            flags.add(a.lstrip("-"))
        else:
            words.append(a)
    if not words:
        raise Usage("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}")
    verb, resources = words[0], words[1:]
    if verb not in VERBS:
        raise Usage(f"'{verb}' not understood.")
    if not resources:
        raise Usage(f"USAGE: drbdadm {verb} [OPTION...] {{all|RESOURCE...}}")
    return verb, resources, flags


def ctl(resource: str, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any] | None:
    """One request to the daemon; None if it is not running."""
    path = run_paths(resource)[0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None
    buf = b""
    with s:
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None  # the daemon exited (``down``) while we asked
    if not buf:
        return None
    reply: dict[str, Any] = json.loads(buf)
    return reply


def fail_state_change(res: Resource, minor: int, verb: str, reply: dict[str, Any]) -> int:
    rc = int(reply.get("rc", 10))
    sys.stderr.write(f"{minor}: {reply.get('err', 'failed')}\n")
    sys.stderr.write(f"Command 'drbdsetup-84 {verb} {minor}' terminated with exit code {rc}\n")
    return rc


def shared_run_dir() -> None:
    """Make ``/run/drbd`` a shared mount so the daemon's FUSE mount, made in its private mount
    namespace (see ``daemon.private_mount_namespace``), shows up in the node's too."""
    os.makedirs(RUN_DIR, exist_ok=True)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == RUN_DIR and any(t.startswith("shared:") for t in fields[6:]):
                return
    subprocess.run(["mount", "--bind", RUN_DIR, RUN_DIR], check=True)
    subprocess.run(["mount", "--make-shared", RUN_DIR], check=True)


def unmount_stale(mnt: str) -> None:
    with open("/proc/self/mounts") as f:
        if f" {mnt} " in f.read():
            subprocess.run(["umount", "-l", mnt], capture_output=True)


def spawn(res: Resource, connect: bool) -> int:
    shared_run_dir()
    unmount_stale(run_paths(res.name)[1])
    log_path = f"{LOG_DIR}/drbd-{res.name}.log"
    argv = [sys.executable, "-m", "lab.replicator.daemon", "--resource", res.name,
            "--config-dir", str(Path(res.file).parent)]
    if not connect:
        argv.append("--no-connect")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, cwd="/")

    def outcome() -> str | None:
        if proc.poll() is not None:
            return "exited"
        reply = ctl(res.name, {"cmd": "status"}, timeout=2)
        return "up" if reply is not None and reply["state"].get("fuse") else None
    try:
        ended = wait_for(outcome, timeout=20, interval=0.05, max_interval=0.05,
                         what=f"{res.name}'s replicator to serve its device")
    except WaitTimeout:
        sys.stderr.write(f"{res.name}: replicator did not come up in 20 s (see {log_path})\n")
        return 10
    if ended == "exited":
        tail = Path(log_path).read_text(errors="replace").splitlines()[-5:]
        for line in tail:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"Command 'drbdmeta {res.host(socket.gethostname()).minor} v08 "
                         f"... apply-al' terminated with exit code 255\n")
        return 10
    return 0


def create_md(res: Resource, flags: set[str]) -> int:
    host = res.host(socket.gethostname())
    if ctl(res.name, {"cmd": "status"}) is not None:
        sys.stderr.write(f"Device '{host.minor}' is configured!\n")
        return 20
    try:
        fd = os.open(host.disk, os.O_RDWR)
    except OSError as e:
        sys.stderr.write(f"open({host.disk}) failed: {e.strerror}\n")
        return 20
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        try:
            Metadata.load(fd, size)
            exists = True
        except MetadataError:
            exists = False
        if exists and "force" not in flags:
            print("You want me to create a v08 style flexible-size internal meta data block.\n"
                  "There appears to be a v08 flexible-size internal meta data block\n"
                  f"already in place on {host.disk} at byte offset {size}\n\n"
                  "Do you really want to overwrite the existing meta-data?\n"
                  "[need to type 'yes' to confirm] ", end="", flush=True)
            answer = sys.stdin.readline().strip() if not sys.stdin.closed else ""
            if answer != "yes":
                print("\nOperation canceled.")
                return 20
        print("initializing activity log\ninitializing bitmap "
              f"({(size // 4096 + 7) // 8 // 1024 + 1} KB) to all zero")
        Metadata.create(fd, size)
        print("Writing meta data...\nNew drbd meta data block successfully created.\nsuccess")
        return 0
    finally:
        os.close(fd)


def role_of(st: dict[str, Any]) -> str:
    return f"{st['role']}/{st['peer_role']}"


def status_text(res: Resource, st: dict[str, Any] | None) -> str:
    """``drbdadm status`` as drbd-utils 9 prints it."""
    if st is None:
        return f"# No currently configured DRBD found.\n{res.name}: No such resource\n"
    peer = res.peer_of(socket.gethostname()).name
    lines = [f"{res.name} role:{st['role']}", f"  disk:{st['dstate']}"]
    if st["cstate"] in ("StandAlone", "WFConnection", "WFReportParams"):
        conn = {"StandAlone": "StandAlone", "WFConnection": "Connecting",
                "WFReportParams": "Connecting"}[st["cstate"]]
        lines.append(f"  {peer} connection:{conn}")
    else:
        lines.append(f"  {peer} role:{st['peer_role']}")
        repl = {"Connected": "Established"}.get(st["cstate"], st["cstate"])
        extra = ""
        progress = st.get("resync") or st.get("verify")
        if progress and progress["total_kib"]:
            r = progress
            extra = f" done:{100.0 * r['done_kib'] / r['total_kib']:.2f}"
        lines.append(f"    replication:{repl} peer-disk:{st['pdsk']}{extra}")
    return "\n".join(lines) + "\n\n"


def run_verb(verb: str, res: Resource, flags: set[str], args: list[str]) -> int:
    host = res.host(socket.gethostname())
    minor = host.minor
    if verb == "sh-dev":
        print(host.device)
        return 0
    if verb == "sh-minor":
        print(minor)
        return 0
    if verb == "sh-resources":
        print(res.name)
        return 0
    if verb == "create-md":
        return create_md(res, flags)
    if verb == "dump":
        print(f"# resource {res.name} on {host.name}: not ignored, not stacked\n"
              f"# defined at {res.file}:{res.line}")
        return 0
    reply = ctl(res.name, {"cmd": "status"})
    st = reply["state"] if reply else None
    if verb in ("role", "cstate", "dstate"):
        if st is None:
            print("Unconfigured")
            return 0
        print({"role": role_of(st), "cstate": st["cstate"],
               "dstate": f"{st['dstate']}/{st['pdsk']}"}[verb])
        return 0
    if verb == "status":
        sys.stdout.write(status_text(res, st))
        return 0 if st is not None else 10
    if verb == "lab-status":
        print(json.dumps(st))
        return 0 if st is not None else 3
    if verb == "up":
        if st is not None:
            sys.stderr.write(f"{minor}: Failure: (161) Minor or volume exists already "
                             "(delete it first)\n")
            return 10
        return spawn(res, connect=True)
    if verb == "attach":
        if st is None:
            return spawn(res, connect=False)
        req: dict[str, Any] = {"cmd": "attach"}
    elif verb == "down":
        if st is None:
            return 0
        req = {"cmd": "down"}
    elif verb == "primary":
        req = {"cmd": "primary", "force": bool(flags & {"force", "overwrite-data-of-peer"})}
    elif verb == "connect":
        req = {"cmd": "connect", "discard_my_data": "discard-my-data" in flags}
    elif verb == "lab-io-error":
        req = {"cmd": "io-error", "on": "off" not in args}
    else:
        req = {"cmd": verb}
    if st is None:
        sys.stderr.write(f"{minor}: Failure: (127) Device minor not allocated\n"
                         "additional info from kernel:\nunknown minor\n"
                         f"Command 'drbdsetup-84 {verb} {minor}' terminated with exit code 10\n")
        return 10
    reply = ctl(res.name, req)
    if reply is None:
        sys.stderr.write(f"{res.name}: replicator went away\n")
        return 10
    if reply["rc"] != 0:
        return fail_state_change(res, minor, verb, reply)
    if verb == "down":
        mnt = run_paths(res.name)[1]

        def gone() -> bool:
            """The replicator no longer answers and its FUSE mount is gone."""
            if ctl(res.name, {"cmd": "status"}, 1) is not None:
                return False
            with open("/proc/self/mounts") as f:
                return f" {mnt} " not in f.read()
        with contextlib.suppress(WaitTimeout):  # what is left is unmounted below
            wait_for(gone, timeout=20, interval=0.05, max_interval=0.05,
                     what=f"{res.name}'s replicator to stop")
        unmount_stale(mnt)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        verb, names, flags = parse_args(argv)
    except Usage as e:
        sys.stderr.write(f"{e}\n")
        return 20
    try:
        resources = load_dir(CONFIG_DIR)
    except (ResFileError, OSError) as e:
        sys.stderr.write(f"{e}\n")
        return 10
    me = socket.gethostname()
    extra = [n for n in names if n in ("on", "off")]
    names = [n for n in names if n not in ("on", "off")]
    if names == ["all"]:
        selected = [r for r in resources.values() if me in r.hosts]
    else:
        selected = []
        for n in names:
            if n not in resources:
                sys.stderr.write(f"'{n}' not defined in your config (for this host).\n")
                return 10
            selected.append(resources[n])
    rc = 0
    for res in selected:
        if me not in res.hosts:
            sys.stderr.write(f"{res.file}:{res.line}: in resource {res.name}, there is no "
                             f"host section for this host ({me})\n")
            return 10
        rc = run_verb(verb, res, flags, extra) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
