"""The demo's watcher reaps daemons that exit while it keeps running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from postveil.harness.daemons import DaemonProcess
from postveil.harness.demo import report_exited


def process_state(pid: int) -> str | None:
    """Return the state letter from /proc/PID/stat (``Z`` for a zombie), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


def wait_for_state(pid: int, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while process_state(pid) != state and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_state(pid) == state


def test_report_exited_reaps_zombie(tmp_path: Path) -> None:
    # A milter without a configuration file exits with status 78 at once.
    daemon = DaemonProcess(
        "postveil.milter.daemon", tmp_path / "absent.yaml", tmp_path / "milter.log", ready=lambda: True
    ).start()
    pid = daemon.pid
    assert pid is not None
    wait_for_state(pid, "Z")
    reported: set[str] = set()

    lines = report_exited({"milter": daemon}, reported)

    assert process_state(pid) is None
    assert reported == {"milter"}
    assert len(lines) == 1
    assert f"postveil-milter (pid {pid}) exited with status 78" in lines[0]
    assert str(tmp_path / "milter.log") in lines[0]
    assert "milter_default_action = tempfail" in lines[0]
    assert report_exited({"milter": daemon}, reported) == []


def test_report_exited_names_signal(tmp_path: Path) -> None:
    daemon = DaemonProcess("sleep", tmp_path / "unused.yaml", tmp_path / "sleep.log", ready=lambda: True)
    # Any child process will do; start() would run "python -m MODULE --config PATH".
    daemon.process = subprocess.Popen(["sleep", "60"])
    reported: set[str] = set()

    running = report_exited({"policyd": daemon}, reported)
    os.kill(daemon.process.pid, signal.SIGKILL)
    wait_for_state(daemon.process.pid, "Z")
    killed = report_exited({"policyd": daemon}, reported)

    assert running == []
    assert len(killed) == 1
    assert f"postveil-policyd (pid {daemon.process.pid}) was killed by SIGKILL" in killed[0]
    assert "milter_default_action" not in killed[0]
    assert process_state(daemon.process.pid) is None
