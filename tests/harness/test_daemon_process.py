"""DaemonProcess: each start reads only its own part of a shared log file."""

from __future__ import annotations

from pathlib import Path

from postveil.harness.daemons import DaemonProcess


def test_log_text_covers_latest_start_only(tmp_path: Path) -> None:
    log_path = tmp_path / "milter.log"
    log_path.write_text("line from an earlier run\n")
    daemon = DaemonProcess(
        "postveil.milter.daemon", tmp_path / "absent.yaml", log_path, ready=lambda: True
    )

    for _ in range(2):
        daemon.start()
        assert daemon.process is not None
        assert daemon.process.wait(30) == 78

    assert daemon.log_text().count("failed to read configuration") == 1
    assert "earlier run" not in daemon.log_text()
    assert daemon.full_log_text().count("failed to read configuration") == 2
    assert daemon.full_log_text().startswith("line from an earlier run\n")
