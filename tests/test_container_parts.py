"""The pure parts of starting a node: copying persistent files, the init's argument, exit."""

from __future__ import annotations

import marshal
import os
import stat
import subprocess
import time
from pathlib import Path

from lab.cgroup import Cgroup
from lab.container import ContainerSpec, copy_preserving
from lab.state import ProcessRef


def test_copy_preserving_keeps_what_cp_a_keeps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "script").write_text("#!/bin/sh\n")
    os.chown(src / "sub" / "script", 1, 2)
    (src / "sub" / "script").chmod(0o4750)  # after chown, which clears set-id bits
    os.symlink("sub/script", src / "link")
    os.mkfifo(src / "fifo", 0o600)
    os.utime(src / "sub" / "script", ns=(1_000_000_000, 2_000_000_000))
    (src / "sub").chmod(0o750)
    copy_preserving(str(src), str(tmp_path / "dst"))
    dst = tmp_path / "dst"
    script = os.lstat(dst / "sub" / "script")
    assert (dst / "sub" / "script").read_text() == "#!/bin/sh\n"
    assert (stat.S_IMODE(script.st_mode), script.st_uid, script.st_gid) == (0o4750, 1, 2)
    assert script.st_mtime_ns == 2_000_000_000
    assert os.readlink(dst / "link") == "sub/script"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dst / "sub").st_mode) == 0o750


def test_init_argument_round_trips(tmp_path: Path) -> None:
    spec = ContainerSpec(hostname="n1", fs_root=tmp_path, console=tmp_path / "console",
                         cgroup=Cgroup(tmp_path / "cg"), sysctls={"net/ipv4/ip_forward": "1"})
    decoded = marshal.loads(bytes.fromhex(spec.init_argument()))
    assert decoded == spec.init_spec()
    assert decoded["hostname"] == "n1" and decoded["sysctls"] == {"net/ipv4/ip_forward": "1"}


def test_a_zombie_has_exited_though_it_is_still_there() -> None:
    child = subprocess.Popen(["true"])
    ref = ProcessRef.of(child.pid)
    deadline = time.monotonic() + 5
    while not ref.exited() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ref.alive(), "not reaped yet: still listed in /proc"
    assert ref.exited()
    child.wait()
    assert ref.exited() and not ref.alive()


def test_a_running_process_has_not_exited() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        assert not ProcessRef.of(child.pid).exited()
        assert ProcessRef(child.pid, ProcessRef.of(child.pid).start + 1).exited()  # PID reused
    finally:
        child.kill()
        child.wait()
