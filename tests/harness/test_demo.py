"""The demo reaps daemons that exit while it runs and removes its directory at a normal exit."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postveil.harness import demo
from postveil.harness.daemons import DaemonProcess
from postveil.harness.demo import report_exited
from postveil.harness.postfix import PostfixError
from postveil.harness.pytest_plugin import postfix_available
from postveil.harness.world import HARNESS_ROOT_ENV, KEEP_ENV, World


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
        "postveil.milter.daemon",
        tmp_path / "absent.yaml",
        tmp_path / "milter.log",
        ready=lambda: True,
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
    daemon = DaemonProcess(
        "sleep", tmp_path / "unused.yaml", tmp_path / "sleep.log", ready=lambda: True
    )
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


@pytest.fixture
def harness_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    reason = postfix_available()
    if reason is not None:
        pytest.skip(f"the demo needs what the private Postfix needs: {reason}")
    # Not under tmp_path: gpg-agent's socket path below a long directory name would
    # exceed the 108 bytes of a unix socket address, and key generation would fail.
    root = Path(tempfile.mkdtemp(prefix="pv-demo-"))
    monkeypatch.setenv(HARNESS_ROOT_ENV, str(root))
    monkeypatch.delenv(KEEP_ENV, raising=False)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def interrupt_at_postfix_start(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make the demo stop where it would start Postfix, the first step after the fixtures.

    The error plays the part of Ctrl-C (KeyboardInterrupt) or of a failed start, so the test
    does not need a whole Postfix run to reach the demo's clean-up.
    """

    def raise_error(self: World, **settings: str) -> None:
        raise error

    monkeypatch.setattr(World, "start_postfix", raise_error)


def test_demo_interrupted_removes_directory(
    harness_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt_at_postfix_start(monkeypatch, KeyboardInterrupt())

    status = demo.run()

    assert status == 0
    assert list(harness_root.iterdir()) == []
    assert "demo: removed " in capsys.readouterr().out


def test_demo_keep_files_keeps_directory(
    harness_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt_at_postfix_start(monkeypatch, KeyboardInterrupt())

    status = demo.run(keep_files=True)

    kept = list(harness_root.iterdir())
    assert status == 0
    assert len(kept) == 1
    assert f"demo: kept {kept[0]}" in capsys.readouterr().out


def test_demo_failure_keeps_directory(
    harness_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt_at_postfix_start(monkeypatch, PostfixError("postfix failed to start"))

    with pytest.raises(PostfixError):
        demo.run()

    kept = list(harness_root.iterdir())
    assert len(kept) == 1
    assert (kept[0] / "log").is_dir()
    assert f"demo: kept {kept[0]}" in capsys.readouterr().out


def test_demo_sender_domain_has_sink(
    harness_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Notices go to the sender; without an MX in the DNS fixture Postfix bounces them.
    seen: list[World] = []

    def record_world(self: World, **settings: str) -> None:
        seen.append(self)
        raise KeyboardInterrupt()

    monkeypatch.setattr(World, "start_postfix", record_world)

    assert demo.run() == 0
    domains = seen[0].domains
    assert demo.SENDER.rpartition("@")[2] in domains
    assert demo.BULK_SENDER.rpartition("@")[2] in domains


def test_intake_line_picks_copy_of_message() -> None:
    maillog = (
        "Dec 05 20:39:41 world postfix-world/cleanup[1]: 4jhgAAAAAAzAAAA: message-id=<demo-1@clinic.test>\n"
        "Dec 05 20:39:41 world postfix-world/cleanup[1]: 4jhgBBBBBBzBBBB: message-id=<demo-2@clinic.test>\n"
        "Dec 05 20:39:42 world postfix-world/pipe[2]: 4jhgAAAAAAzAAAA: to=<portal-intake@clinic.test>, "
        "relay=portal, delay=0.44, dsn=2.0.0, status=sent (delivered via portal service "
        "(stored as portal message aaaa for 1 recipient(s)))\n"
        "Dec 05 20:39:42 world postfix-world/pipe[2]: 4jhgBBBBBBzBBBB: to=<portal-intake@clinic.test>, "
        "relay=portal, delay=0.44, dsn=2.0.0, status=sent (delivered via portal service "
        "(stored as portal message bbbb for 3 recipient(s)))\n"
    )

    line = demo.intake_line(maillog, "demo-2@clinic.test")

    assert line is not None
    assert line.startswith("4jhgBBBBBBzBBBB: to=<portal-intake@clinic.test> status=sent")
    assert "stored as portal message bbbb for 3 recipient(s)" in line
    assert demo.intake_line(maillog, "demo-3@clinic.test") is None


def test_demo_runs_portal_pickup(
    harness_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The whole demo with --keep-running. The replaced watch_daemons raises
    # KeyboardInterrupt, as Ctrl-C would, once the running details are printed.
    seen: list[World] = []

    def stop_watching(world: World, interval: float = 1.0) -> None:
        seen.append(world)
        assert world.daemons["portal"].running
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "watch_daemons", stop_watching)

    status = demo.run(keep_running=True)

    output = capsys.readouterr().out
    assert status == 0, output
    assert len(seen) == 1
    portal_daemon = seen[0].daemons["portal"]
    assert not portal_daemon.running
    assert list(harness_root.iterdir()) == []

    pickup = output[output.index("demo: built-in portal at http://127.0.0.1:") :]
    assert "'lab results' for patient@no-tls.test" in pickup
    assert re.search(
        r"intake +\S+: to=<portal-intake@clinic.test> status=sent \(.*stored as portal message [0-9a-f]+ for 1 recipient",
        pickup,
    )
    assert re.search(
        r"notification +mail/\d{6}-mx\.no-tls\.test\.eml from no-reply@clinic\.test", pickup
    )
    assert re.search(r"GET +/m/<token> +200 ", pickup)
    assert re.search(
        r"POST +/m/<token>/code +303 .*code mail: mail/\d{6}-mx\.no-tls\.test\.eml", pickup
    )
    assert re.search(r"POST +/m/<token>/verify +303 ", pickup)
    assert re.search(r"GET +/m/<token>/message +200 +Subject: Results for your patient", pickup)
    assert (
        "  postveil portal status:\n"
        "    messages waiting: 2\n"
        "    pickups: 4\n"
        "    pickups opened: 1\n"
        "    messages by master key id:\n"
    ) in pickup
    assert re.search(r"\n      [0-9a-f]{16} +2  current: portal\.key_file ", pickup)

    table = output[output.index("message ") : output.index("demo: built-in portal at")]
    portal_rows = [line for line in table.splitlines() if " portal " in line]
    assert len(portal_rows) == 4
    for row in portal_rows:
        assert row.rstrip().endswith("stored in portal, link sent")

    running = output[output.index("demo: running until Ctrl-C") :]
    assert re.search(rf"postveil-portal +pid {portal_daemon.pid} \(user nobody\)", running)
    assert re.search(r"portal pages +http://127\.0\.0\.1:\d+ ", running)
    assert "curl -i -X POST LINK/code" in running
    assert "Your secure portal code" in running
