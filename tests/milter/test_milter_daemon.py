"""postveil-milter as a process: socket set-up, start-up failures, reload and exit.

These tests run the real daemon without Postfix; each gets its own socket path.
"""

from __future__ import annotations

import grp
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from postveil.harness.daemons import DaemonProcess
from postveil.harness.world import World
from postveil.milter.daemon import EX_CONFIG, READY_MESSAGE


def write_config(world: World, tmp_path: Path, name: str = "postveil.yaml", **milter: Any) -> Path:
    config = world.base_config()
    config["milter"]["socket"] = f"unix:{tmp_path / 'milter.sock'}"
    config["milter"].update(milter)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def edit_config(path: Path, section: str, **values: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config[section].update(values)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def run_until_exit(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postveil.milter.daemon", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def started() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; every one still running is stopped afterwards."""
    daemons: list[DaemonProcess] = []
    yield daemons
    for daemon in daemons:
        daemon.terminate()


def start(started: list[DaemonProcess], config_path: Path, log_name: str = "milter.log") -> DaemonProcess:
    daemon = DaemonProcess(
        "postveil.milter.daemon", config_path, config_path.parent / log_name, ready=lambda: True
    ).start()
    started.append(daemon)
    daemon.wait_for_log(READY_MESSAGE)
    return daemon


def reload_and_wait(daemon: DaemonProcess, marker: str) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log(marker)


def test_missing_group_exits_78(world: World, tmp_path: Path) -> None:
    result = run_until_exit(write_config(world, tmp_path, socket_group="nosuchgroup"))

    assert result.returncode == EX_CONFIG
    assert "group 'nosuchgroup' (milter.socket_group) does not exist on this host" in result.stderr
    assert "create the group" in result.stderr
    assert "Traceback" not in result.stderr


def test_inet_port_in_use_exits_78(world: World, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_until_exit(write_config(world, tmp_path, socket=f"inet:{port}@127.0.0.1"))

    assert result.returncode == EX_CONFIG
    assert f"cannot open milter socket inet:{port}@127.0.0.1: Address already in use" in result.stderr
    assert "ss -ltnp" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_socket_directory_exits_78(world: World, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    result = run_until_exit(write_config(world, tmp_path, socket=f"unix:{tmp_path / 'afile' / 'milter.sock'}"))

    assert result.returncode == EX_CONFIG
    assert "cannot create directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_config_exits_78_one_line_each(world: World, tmp_path: Path) -> None:
    path = write_config(world, tmp_path)
    edit_config(path, "milter", timeout="0s", colour="blue")

    result = run_until_exit(path)

    assert result.returncode == EX_CONFIG
    lines = result.stderr.splitlines()
    assert lines[0] == f"postveil-milter: 2 error(s) in {path}; not starting"
    assert all(line.startswith("postveil-milter: ") for line in lines)
    assert len(lines) == 3


def test_path_that_is_not_a_socket_is_kept(world: World, tmp_path: Path) -> None:
    (tmp_path / "milter.sock").write_text("not a socket")

    result = run_until_exit(write_config(world, tmp_path))

    assert result.returncode == EX_CONFIG
    assert "exists and is not a socket" in result.stderr
    assert (tmp_path / "milter.sock").read_text() == "not a socket"


def test_second_instance_exits_78(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(world, tmp_path)
    first = start(started, config_path)
    inode = (tmp_path / "milter.sock").stat().st_ino

    result = run_until_exit(config_path)

    assert result.returncode == EX_CONFIG
    assert "another process (probably another postveil-milter) is already listening on it" in result.stderr
    assert first.running
    assert (tmp_path / "milter.sock").stat().st_ino == inode
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "milter.sock"))


def test_stale_socket_is_replaced(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(tmp_path / "milter.sock"))

    daemon = start(started, write_config(world, tmp_path))

    assert "removing stale milter socket" in daemon.log_text()
    assert stat.S_ISSOCK((tmp_path / "milter.sock").stat().st_mode)


def test_clean_exit_removes_socket(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    daemon = start(started, write_config(world, tmp_path))
    assert (tmp_path / "milter.sock").exists()

    assert daemon.terminate() == 0
    assert not (tmp_path / "milter.sock").exists()


def test_socket_has_final_mode_and_group(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    try:
        group = grp.getgrnam("postfix")
    except KeyError:
        pytest.skip("group postfix does not exist (install the postfix package)")
    start(started, write_config(world, tmp_path, socket_mode="0640", socket_group="postfix"))

    status = (tmp_path / "milter.sock").stat()
    assert stat.S_IMODE(status.st_mode) == 0o640
    assert status.st_gid == group.gr_gid


def test_reload_applies_logging_and_socket_mode(
    world: World, tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(world, tmp_path, socket_mode="0660")
    daemon = start(started, config_path)
    edit_config(config_path, "milter", socket_mode="0600", timeout="300s")
    edit_config(config_path, "logging", level="DEBUG", levels={"postveil.milter": "WARNING"})

    reload_and_wait(daemon, "milter.timeout changed")

    assert stat.S_IMODE((tmp_path / "milter.sock").stat().st_mode) == 0o600
    # postveil.milter now logs only warnings, so the INFO line of a reload is missing.
    assert "configuration reloaded" not in daemon.log_text()
    assert "milter.socket changed" not in daemon.log_text()

    edit_config(config_path, "logging", levels={})
    reload_and_wait(daemon, "configuration reloaded")


def test_reload_switches_log_target(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(world, tmp_path)
    daemon = start(started, config_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "syslog"))
        syslog.settimeout(20)
        edit_config(config_path, "logging", target="syslog", syslog_socket=str(tmp_path / "syslog"))
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)

        datagram = syslog.recv(4096).decode()

    assert "postveil-milter[" in datagram
    assert "configuration reloaded" in datagram


def test_reload_errors_one_line_each(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(world, tmp_path)
    daemon = start(started, config_path)
    edit_config(config_path, "milter", timeout="0s", colour="blue")

    reload_and_wait(daemon, "keeping the running configuration")
    daemon.wait_for_log("colour")

    lines = [line for line in daemon.log_text().splitlines() if line.startswith("ERROR")]
    assert lines[0].startswith(f"ERROR postveil.milter: reload of {config_path} failed with 2 error(s);")
    assert lines[1].startswith("ERROR postveil.milter: reload: ")
    assert lines[2].startswith("ERROR postveil.milter: reload: ")
    assert len(lines) == 3
    assert not any(line.startswith((" ", "\t")) for line in daemon.log_text().splitlines())
    assert daemon.running


def test_reload_with_missing_group_keeps_running(
    world: World, tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(world, tmp_path, socket_mode="0660")
    daemon = start(started, config_path)
    edit_config(config_path, "milter", socket_mode="0600", socket_group="nosuchgroup")

    reload_and_wait(daemon, "keeping the running configuration")

    assert "group 'nosuchgroup' (milter.socket_group) does not exist" in daemon.log_text()
    assert stat.S_IMODE((tmp_path / "milter.sock").stat().st_mode) == 0o660
    assert daemon.running


def test_missing_key_stores_warned(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(world, tmp_path)
    edit_config(config_path, "pgp", gnupg_home=str(tmp_path / "no-gnupg"))
    daemon = start(started, config_path)

    text = daemon.log_text()
    assert (f"WARNING postveil.milter: pgp.gnupg_home {tmp_path / 'no-gnupg'} does not exist or is "
            "not a directory; every message whose route reaches pgp will be deferred (451)") in text
    assert "smime.certificate_dir" not in text

    edit_config(config_path, "smime", certificate_dir=str(tmp_path / "no-certs"))
    reload_and_wait(daemon, "smime.certificate_dir")

    lines = daemon.log_text().splitlines()
    reloaded = lines.index(next(line for line in lines if "configuration reloaded" in line))
    after_reload = "\n".join(lines[reloaded:])
    assert f"pgp.gnupg_home {tmp_path / 'no-gnupg'} does not exist" in after_reload
    assert f"smime.certificate_dir {tmp_path / 'no-certs'} does not exist" in after_reload
    assert daemon.running


def test_unusable_reinject_store_warned(world: World, tmp_path: Path, started: list[DaemonProcess]) -> None:
    store = tmp_path / "store-is-a-directory"
    store.mkdir()
    config_path = write_config(world, tmp_path, reinject_store=str(store))
    daemon = start(started, config_path)

    assert (f"WARNING postveil.milter: milter.reinject_store {store} is a directory, not a file; every "
            "message with copies to re-inject (PGP, S/MIME, portal, notices) will be deferred (451)"
            ) in daemon.log_text()
    assert daemon.running


def test_help_names_defaults_signals_and_exit_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postveil.milter.daemon", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, POSTVEIL_CONFIG="/elsewhere/p.yaml", COLUMNS="200"),
    )

    assert result.returncode == 0
    assert "default: $POSTVEIL_CONFIG, else /etc/postveil/postveil.yaml" in result.stdout
    assert "/elsewhere/p.yaml" not in result.stdout
    assert "TERM, INT" in result.stdout
    assert "HUP" in result.stdout
    assert "78" in result.stdout


def test_missing_syslog_socket_exits_78(world: World, tmp_path: Path) -> None:
    path = write_config(world, tmp_path)
    edit_config(path, "logging", target="syslog", syslog_socket=str(tmp_path / "absent-log"))

    result = run_until_exit(path)

    assert result.returncode == EX_CONFIG
    assert "cannot set up logging to syslog" in result.stderr
    assert "syslog socket not found" in result.stderr


def test_reload_to_missing_syslog_keeps_logging(
    world: World, tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(world, tmp_path)
    daemon = start(started, config_path)
    edit_config(config_path, "logging", target="syslog", syslog_socket=str(tmp_path / "absent-log"))

    reload_and_wait(daemon, "configuration reloaded")

    assert "reload: cannot switch logging to syslog" in daemon.log_text()
    assert daemon.running
