"""postveil-policyd as a process: start-up failures, reload, audit events and help text.

Every test runs the real daemon on its own loopback ports and files. DNS points at a
closed port on 127.0.0.1: the domains queried here are set with ``postveil domain
set``, so no lookup leaves the facts cache.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from postveil.audit import AuditKey, generate_key_file, list_log_files, verify_chain
from postveil.config import load_config
from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import free_port
from postveil.harness.pytest_plugin import unique_domain
from postveil.harness.world import World
from postveil.policyd.daemon import EXIT_CONFIG, READY_MESSAGE
from postveil.policyd.netstring import NetstringDecoder, encode

PREFIX = "postveil-policyd: "


def write_config(tmp_path: Path, **policyd: Any) -> Path:
    key = tmp_path / "audit.key"
    if not key.exists():
        generate_key_file(key)
    config = {
        "audit": {"directory": str(tmp_path / "audit"), "key_file": str(key)},
        "policyd": {
            "socketmap_listen": f"inet:127.0.0.1:{free_port()}",
            "policy_listen": f"inet:127.0.0.1:{free_port()}",
            "cache_path": str(tmp_path / "facts.sqlite3"),
            "postfix_version": "3.7.11",
            "probe_new_domain_delay": "1h",
            **policyd,
        },
        "dns": {
            "nameservers": [f"127.0.0.1:{free_port()}"], "timeout": "200ms", "lifetime": "500ms",
        },
        "logging": {"level": "INFO"},
    }
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def edit_config(path: Path, section: str, **values: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def run_until_exit(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postveil.policyd.daemon", "--config", str(config_path)],
        capture_output=True, text=True, timeout=60,
    )


def set_domain_level(config_path: Path, domain: str, level: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(config_path),
         "set", domain, "--tls", level],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def socketmap_port(config_path: Path) -> int:
    listen = yaml.safe_load(config_path.read_text())["policyd"]["socketmap_listen"]
    return int(listen.rpartition(":")[2])


def audit_records(tmp_path: Path, *kinds: str) -> list[dict[str, Any]]:
    path = tmp_path / "audit" / "audit.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in records if record["kind"] in kinds]


class SocketmapClient:
    """One socketmap connection kept open across requests, as Postfix keeps it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = NetstringDecoder(200_000)

    def query(self, key: str) -> bytes:
        self.sock.sendall(encode(b"postveil " + key.encode()))
        while True:
            replies = self.decoder.feed(self.sock.recv(4096))
            if replies:
                return replies[0]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def started() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; every one still running is stopped afterwards."""
    daemons: list[DaemonProcess] = []
    yield daemons
    for daemon in daemons:
        daemon.terminate()


def start(
    started: list[DaemonProcess], config_path: Path, log_name: str = "policyd.log"
) -> DaemonProcess:
    daemon = DaemonProcess(
        "postveil.policyd.daemon", config_path, config_path.parent / log_name, ready=lambda: True
    ).start()
    started.append(daemon)
    daemon.wait_for_log(READY_MESSAGE)
    return daemon


def reload_and_wait(daemon: DaemonProcess, marker: str) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for_log(marker)


# -- command line and start-up failures ----------------------------------------------


def test_help_names_defaults_signals_and_exit_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postveil.policyd.daemon", "--help"],
        capture_output=True, text=True,
        env=dict(os.environ, POSTVEIL_CONFIG="/elsewhere/p.yaml", COLUMNS="200"),
    )

    assert result.returncode == 0
    assert "default: $POSTVEIL_CONFIG, else /etc/postveil/postveil.yaml" in result.stdout
    assert "/elsewhere/p.yaml" not in result.stdout
    assert "TERM, INT" in result.stdout
    assert "HUP" in result.stdout
    assert "78" in result.stdout


def test_invalid_config_exits_78_one_line_each(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    edit_config(path, "policyd", socketmap_listen="nowhere", colour="blue")

    result = run_until_exit(path)

    assert result.returncode == EXIT_CONFIG
    lines = result.stderr.splitlines()
    assert lines[0] == f"{PREFIX}2 error(s) in {path}; not starting"
    assert all(line.startswith(PREFIX) for line in lines)
    assert any("socketmap_listen" in line for line in lines)
    assert any("colour" in line for line in lines)
    assert len(lines) == 3


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    result = run_until_exit(tmp_path / "absent.yaml")

    assert result.returncode == EXIT_CONFIG
    assert "failed to read configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_syslog_socket_exits_78(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    edit_config(path, "logging", target="syslog", syslog_socket=str(tmp_path / "absent-log"))

    result = run_until_exit(path)

    assert result.returncode == EXIT_CONFIG
    assert result.stderr.splitlines() == [
        f"{PREFIX}cannot set up logging to syslog: [Errno 2] syslog socket not found: "
        f"'{tmp_path / 'absent-log'}'; not starting"
    ]


def test_port_in_use_exits_78(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_until_exit(write_config(tmp_path, policy_listen=f"inet:127.0.0.1:{port}"))

    assert result.returncode == EXIT_CONFIG
    assert (f"cannot listen on inet:127.0.0.1:{port} (policyd.policy_listen): "
            "Address already in use") in result.stderr
    assert "ss -ltnp" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_unix_directory_exits_78(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    address = f"unix:{tmp_path / 'afile' / 'socketmap.sock'}"

    result = run_until_exit(write_config(tmp_path, socketmap_listen=address))

    assert result.returncode == EXIT_CONFIG
    expected = f"cannot listen on {address} (policyd.socketmap_listen): cannot create directory"
    assert expected in result.stderr
    assert "afile: File exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_unix_path_too_long_exits_78(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 120)
    address = f"unix:{directory / 'socketmap.sock'}"

    result = run_until_exit(write_config(tmp_path, socketmap_listen=address))

    assert result.returncode == EXIT_CONFIG
    assert f"cannot listen on {address} (policyd.socketmap_listen): " in result.stderr
    assert "Traceback" not in result.stderr


def test_second_instance_on_unix_socket_exits_78(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    socket_path = tmp_path / "run" / "socketmap.sock"
    config_path = write_config(tmp_path, socketmap_listen=f"unix:{socket_path}")
    first = start(started, config_path)
    inode = socket_path.stat().st_ino
    edit_config(config_path, "policyd", policy_listen=f"inet:127.0.0.1:{free_port()}")

    result = run_until_exit(config_path)

    assert result.returncode == EXIT_CONFIG
    assert "another process (probably another postveil-policyd) is listening on it" in result.stderr
    assert first.running
    assert socket_path.stat().st_ino == inode


def test_stale_unix_socket_replaced_and_removed(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    socket_path = tmp_path / "run" / "socketmap.sock"
    socket_path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(socket_path))

    daemon = start(started, write_config(tmp_path, socketmap_listen=f"unix:{socket_path}"))

    assert "removing stale socket" in daemon.log_text()
    assert daemon.terminate() == 0
    assert not socket_path.exists()


def test_unreadable_audit_key_exits_78(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    edit_config(path, "audit", key_file=str(tmp_path / "absent.key"))

    result = run_until_exit(path)

    assert result.returncode == EXIT_CONFIG
    assert "cannot start: cannot read audit HMAC key" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_ca_file_exits_78(tmp_path: Path) -> None:
    path = write_config(tmp_path, probe_ca_file=str(tmp_path / "absent-ca.pem"))

    result = run_until_exit(path)

    assert result.returncode == EXIT_CONFIG
    assert f"policyd.probe_ca_file: cannot load {tmp_path / 'absent-ca.pem'}" in result.stderr
    assert "Traceback" not in result.stderr


# -- reload ------------------------------------------------------------------------


def test_reload_applies_new_config_on_open_connection(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(tmp_path)
    set_domain_level(config_path, "example.org", "encrypt")
    daemon = start(started, config_path)
    client = SocketmapClient(socketmap_port(config_path))
    try:
        assert client.query("example.org") == b"OK encrypt protocols=>=TLSv1.2"
        edit_config(config_path, "policyd", protocols=">=TLSv1.3")

        reload_and_wait(daemon, "configuration reloaded")

        assert client.query("example.org") == b"OK encrypt protocols=>=TLSv1.3"
    finally:
        client.close()
    assert "takes effect after a restart" not in daemon.log_text()


def test_reload_warns_once_per_restart_key(tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(tmp_path)
    set_domain_level(config_path, "example.org", "encrypt")
    old_port = socketmap_port(config_path)
    daemon = start(started, config_path)
    edit_config(config_path, "policyd", socketmap_listen=f"inet:127.0.0.1:{free_port()}",
                cache_path=str(tmp_path / "other.sqlite3"), protocols=">=TLSv1.3")

    reload_and_wait(daemon, "configuration reloaded")

    warnings = [line for line in daemon.log_text().splitlines() if "after a restart" in line]
    assert warnings == [
        "WARNING postveil.policyd: policyd.socketmap_listen changed; "
        "the new value takes effect after a restart",
        "WARNING postveil.policyd: policyd.cache_path changed; "
        "the new value takes effect after a restart",
    ]
    client = SocketmapClient(old_port)
    try:
        # The old listener and the open cache stay; the other keys apply.
        assert client.query("example.org") == b"OK encrypt protocols=>=TLSv1.3"
    finally:
        client.close()
    assert not (tmp_path / "other.sqlite3").exists()


def test_reload_errors_one_line_each(tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(tmp_path)
    set_domain_level(config_path, "example.org", "encrypt")
    daemon = start(started, config_path)
    edit_config(config_path, "policyd", protocols="TLS 1.3", colour="blue")

    reload_and_wait(daemon, "keeping the running configuration")
    daemon.wait_for_log("colour")

    lines = [line for line in daemon.log_text().splitlines() if line.startswith("ERROR")]
    assert lines[0] == (f"ERROR postveil.policyd: reload of {config_path} failed with 2 error(s); "
                        "keeping the running configuration")
    assert lines[1].startswith("ERROR postveil.policyd: reload: ")
    assert lines[2].startswith("ERROR postveil.policyd: reload: ")
    assert len(lines) == 3
    assert not any(line.startswith((" ", "\t")) for line in daemon.log_text().splitlines())
    assert daemon.running
    client = SocketmapClient(socketmap_port(config_path))
    try:
        assert client.query("example.org") == b"OK encrypt protocols=>=TLSv1.2"
    finally:
        client.close()


def test_reload_with_missing_audit_key_keeps_running(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(tmp_path)
    set_domain_level(config_path, "example.org", "encrypt")
    daemon = start(started, config_path)
    edit_config(config_path, "audit", key_file=str(tmp_path / "absent.key"))
    edit_config(config_path, "policyd", protocols=">=TLSv1.3")

    reload_and_wait(daemon, "keeping the running configuration")

    assert "AuditKeyError: cannot read audit HMAC key" in daemon.log_text()
    client = SocketmapClient(socketmap_port(config_path))
    try:
        assert client.query("example.org") == b"OK encrypt protocols=>=TLSv1.2"
    finally:
        client.close()


def test_reload_applies_logging_levels(tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(tmp_path)
    daemon = start(started, config_path)
    edit_config(config_path, "logging", levels={"postveil.policyd": "WARNING"})
    edit_config(config_path, "policyd", policy_listen=f"inet:127.0.0.1:{free_port()}")

    reload_and_wait(daemon, "policyd.policy_listen changed")

    # postveil.policyd now logs only warnings, so the INFO line of a reload is missing.
    assert "configuration reloaded" not in daemon.log_text()
    edit_config(config_path, "logging", levels={})
    reload_and_wait(daemon, "configuration reloaded")


def test_reload_switches_log_target(tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(tmp_path)
    daemon = start(started, config_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "syslog"))
        syslog.settimeout(20)
        edit_config(config_path, "logging", target="syslog", syslog_socket=str(tmp_path / "syslog"))
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)

        datagram = syslog.recv(4096).decode()

    assert "postveil-policyd[" in datagram
    assert "configuration reloaded" in datagram


def test_reload_to_missing_syslog_keeps_logging(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config_path = write_config(tmp_path)
    daemon = start(started, config_path)
    edit_config(config_path, "logging", target="syslog", syslog_socket=str(tmp_path / "absent-log"))

    reload_and_wait(daemon, "configuration reloaded")

    assert "reload: cannot switch logging to syslog" in daemon.log_text()
    assert daemon.running


# -- audit trail -------------------------------------------------------------------


def test_audit_records_start_reloads_and_stop(tmp_path: Path, started: list[DaemonProcess]) -> None:
    config_path = write_config(tmp_path)
    set_domain_level(config_path, "example.org", "encrypt")
    daemon = start(started, config_path)
    edit_config(config_path, "policyd", protocols=">=TLSv1.3")
    reload_and_wait(daemon, "configuration reloaded")
    edit_config(config_path, "policyd", colour="blue")
    reload_and_wait(daemon, "keeping the running configuration")

    assert daemon.terminate() == 0

    records = audit_records(tmp_path, "config", "daemon")
    assert [(record["kind"], record["event"]) for record in records] == [
        ("config", "load"), ("daemon", "start"), ("config", "reload"),
        ("config", "reload_failed"), ("daemon", "stop"),
    ]
    assert all(record["program"] == "postveil-policyd" for record in records)
    assert records[0]["source"] == str(config_path)
    assert records[2]["config_version"] != records[0]["config_version"]
    assert records[3]["error"] == "1 configuration error(s)"
    assert records[3]["config_version"] == records[2]["config_version"]
    assert records[4]["reason"] == "SIGTERM"
    # The admin's change, the requirement change and the daemon's events form one chain.
    key = AuditKey.load(tmp_path / "audit.key")
    result = verify_chain(list_log_files(tmp_path / "audit"), {key.key_id: key})
    assert result.ok


def policy_request(config_path: Path, sender: str, recipient: str) -> bytes:
    """Send one RCPT-stage access policy request and return the reply."""
    listen = yaml.safe_load(config_path.read_text())["policyd"]["policy_listen"]
    with socket.create_connection(("127.0.0.1", int(listen.rpartition(":")[2])), timeout=30) as sock:
        sock.sendall(f"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                     f"sender={sender}\nrecipient={recipient}\n\n".encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {reply!r}"
            reply += chunk
    return reply


def test_rcpt_rejection_records_config_version(
    world: World, tmp_path: Path, started: list[DaemonProcess]
) -> None:
    sender = "news@example.com"
    domain = world.add_domain(unique_domain("bulk-no-tls"), tls="none")
    recipient = f"patient@{domain.name}"
    config_path = write_config(tmp_path, tls_exclusive_senders=[sender])
    edit_config(config_path, "dns", nameservers=[world.dns.nameserver], timeout="2s", lifetime="4s")
    loaded_version = load_config(config_path).version
    daemon = start(started, config_path)

    first = policy_request(config_path, sender, recipient)
    edit_config(config_path, "policyd", protocols=">=TLSv1.3")
    reloaded_version = load_config(config_path).version
    reload_and_wait(daemon, "configuration reloaded")
    second = policy_request(config_path, sender, recipient)

    assert first.startswith(b"action=550 5.7.10 "), first
    assert second.startswith(b"action=550 5.7.10 "), second
    rejections = audit_records(tmp_path, "message")
    assert [record["queue_id"] for record in rejections] == ["NOQUEUE", "NOQUEUE"]
    assert rejections[0]["config_version"] == loaded_version
    assert rejections[1]["config_version"] == reloaded_version
    assert loaded_version != reloaded_version


def test_rcpt_address_literal_rejected_for_exclusive_sender(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    # The socketmap answers NOTFOUND for an address literal, so Postfix would deliver
    # with its default TLS level, which may be plaintext.
    config_path = write_config(tmp_path, tls_exclusive_senders=["news@example.com"])
    start(started, config_path)

    for recipient in ("patient@[192.0.2.1]", "patient@[IPv6:2001:db8::1]", "patient@bad_name!.example"):
        reply = policy_request(config_path, "news@example.com", recipient)
        assert reply.startswith(b"action=550 5.7.10 "), (recipient, reply)
    assert policy_request(config_path, "doctor@example.com", "patient@[192.0.2.1]") == b"action=DUNNO\n\n"
    assert policy_request(config_path, "news@example.com", "postmaster") == b"action=DUNNO\n\n"
    rejections = audit_records(tmp_path, "message")
    assert [record["recipients"][0]["method"] for record in rejections] == ["reject"] * 3


def test_audit_write_failure_is_not_fatal(tmp_path: Path, started: list[DaemonProcess]) -> None:
    (tmp_path / "not-a-directory").write_text("")
    config_path = write_config(tmp_path)
    edit_config(config_path, "audit", directory=str(tmp_path / "not-a-directory"))

    daemon = start(started, config_path)
    reload_and_wait(daemon, "configuration reloaded")

    log_text = daemon.log_text()
    assert "audit: cannot record the config load event" in log_text
    assert "audit: cannot record the daemon start event" in log_text
    assert "audit: cannot record the config reload event" in log_text
    assert daemon.terminate() == 0
    assert "audit: cannot record the daemon stop event" in daemon.log_text()


def test_stop_removes_only_opened_socket(tmp_path: Path, started: list[DaemonProcess]) -> None:
    socket_path = tmp_path / "run" / "socketmap.sock"
    other_path = tmp_path / "run" / "other.sock"
    config_path = write_config(tmp_path, socketmap_listen=f"unix:{socket_path}")
    daemon = start(started, config_path)
    edit_config(config_path, "policyd", socketmap_listen=f"unix:{other_path}")
    reload_and_wait(daemon, "policyd.socketmap_listen changed")
    with socket.socket(socket.AF_UNIX) as bystander:
        # A socket of another program at the newly configured path must survive the stop.
        bystander.bind(str(other_path))

        assert daemon.terminate() == 0

        assert not socket_path.exists()
        assert other_path.exists()


def test_lookup_in_flight_survives_reload(
    world: World, tmp_path: Path, started: list[DaemonProcess]
) -> None:
    domain = unique_domain("reload-silent")
    world.dns.set_silent(f"_mta-sts.{domain}")
    config_path = write_config(tmp_path)
    edit_config(config_path, "dns", nameservers=[world.dns.nameserver], timeout="3s", lifetime="3s")
    daemon = start(started, config_path)
    client = SocketmapClient(socketmap_port(config_path))
    try:
        client.sock.sendall(encode(b"postveil " + domain.encode()))
        time.sleep(0.5)
        edit_config(config_path, "policyd", protocols=">=TLSv1.3")

        reload_and_wait(daemon, "configuration reloaded")

        # The old service finishes the lookup (the DNS query times out) and replies.
        reply = b""
        while not reply:
            replies = client.decoder.feed(client.sock.recv(4096))
            reply = replies[0] if replies else b""
    finally:
        client.close()
        world.dns.set_silent(f"_mta-sts.{domain}", False)
    assert reply == b"TEMP policy lookup failed, try again later"
    assert daemon.running
