"""The shell that puts dnsmasq's files on the replicated disk writes every byte as given."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.services.disk import write_files_lines


def test_files_arrive_exactly(tmp_path: Path) -> None:
    files = {
        str(tmp_path / "dnsmasq" / "dnsmasq.conf"): "domain=$HOME `id` \\n 'q' \"d\"\n",
        str(tmp_path / "dnsmasq" / "no-newline"): "last line without one",
        str(tmp_path / "x" / "marker"): "HAPAIR_FILE_2_END\nstill the file\n",
        str(tmp_path / "empty"): "",
    }
    script = "ok=0\n" + "\n".join(write_files_lines(files)) + "\nexit $ok\n"
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for path, content in files.items():
        assert Path(path).read_text() == content


def test_a_failed_write_fails_the_script(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    files = {str(tmp_path / "file" / "below-a-file"): "x\n"}
    script = "ok=0\n" + "\n".join(write_files_lines(files)) + "\nexit $ok\n"
    assert subprocess.run(["sh", "-c", script], capture_output=True).returncode == 1
