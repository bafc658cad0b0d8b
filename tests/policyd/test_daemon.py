"""postveil-policyd as a process: sd_notify READY/STOPPING, both listeners, SIGTERM, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from postveil.audit import generate_key_file
from postveil.harness.net import free_port
from postveil.policyd.netstring import NetstringDecoder, encode


def audit_section(tmp_path: Path) -> str:
    """Return an ``audit`` YAML section with a fresh key under ``tmp_path``."""
    key = tmp_path / "audit.key"
    if not key.exists():
        generate_key_file(key)
    return f"audit:\n  directory: {tmp_path / 'audit'}\n  key_file: {key}\n"


def audit_records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_config(tmp_path: Path, socketmap_port: int, policy_port: int) -> Path:
    config = tmp_path / "postveil.yaml"
    config.write_text(
        audit_section(tmp_path) +
        "policyd:\n"
        f"  socketmap_listen: inet:127.0.0.1:{socketmap_port}\n"
        f"  policy_listen: inet:127.0.0.1:{policy_port}\n"
        f"  cache_path: {tmp_path / 'facts.sqlite3'}\n"
        "  postfix_version: '3.7.11'\n"
        "  probe_new_domain_delay: 1h\n"
        "  tls_exclusive_senders: ['news@example.com']\n"
        "dns:\n"
        f"  nameservers: ['127.0.0.1:{free_port()}']\n"
        "  timeout: 200ms\n"
        "  lifetime: 500ms\n"
        "logging:\n"
        "  level: INFO\n"
    )
    return config


def postveil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postveil.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def socketmap_query(port: int, key: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(b"postveil " + key.encode()))
        decoder = NetstringDecoder(200_000)
        while True:
            replies = decoder.feed(sock.recv(4096))
            if replies:
                return replies[0]


def test_daemon_lifecycle(tmp_path: Path) -> None:
    socketmap_port, policy_port = free_port(), free_port()
    config = write_config(tmp_path, socketmap_port, policy_port)
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(20)

    assert postveil("domain", "-c", str(config), "set", "example.org", "--tls", "secure").returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "postveil.policyd.daemon", "-c", str(config)],
        env={**os.environ, "NOTIFY_SOCKET": notify_path},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert notify.recv(100) == b"READY=1"
        assert socketmap_query(socketmap_port, "example.org") == (
            b"OK secure servername=hostname protocols=>=TLSv1.2")

        with socket.create_connection(("127.0.0.1", policy_port), timeout=10) as sock:
            sock.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                         b"sender=news@example.com\nrecipient=a@example.org\n\n")
            assert sock.recv(4096) == b"action=DUNNO\n\n"
        # A malformed request closes that connection; the daemon keeps serving.
        with socket.create_connection(("127.0.0.1", policy_port), timeout=10) as sock:
            sock.sendall(b"this is not a policy request\n\n")
            assert sock.recv(4096) == b""
        assert socketmap_query(socketmap_port, "example.org").startswith(b"OK secure")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert notify.recv(100) == b"STOPPING=1"
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
    output = process.stdout.read() if process.stdout else ""
    assert "malformed policy request" in output
    assert "stopped" in output


def test_domain_cli_set_show_list_purge(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, free_port(), free_port()))
    result = postveil("domain", "-c", config, "set", "Example.ORG", "--tls", "encrypt")
    assert result.returncode == 0, result.stderr
    assert "encrypt protocols=>=TLSv1.2" in result.stdout

    shown = json.loads(postveil("domain", "-c", config, "show", "example.org", "--json").stdout)
    assert shown["socketmap_reply"] == "OK encrypt protocols=>=TLSv1.2"
    assert shown["rule"] == "override"
    assert shown["events"][0]["new_level"] == "encrypt"

    listed = json.loads(postveil("domain", "-c", config, "list", "--json").stdout)
    assert listed == [{"domain": "example.org", "level": "encrypt", "rule": "override"}]

    assert postveil("domain", "-c", config, "unset", "example.org").returncode == 0
    shown = json.loads(postveil("domain", "-c", config, "show", "example.org", "--json").stdout)
    assert shown["socketmap_reply"] == "NOTFOUND"

    assert postveil("domain", "-c", config, "purge", "example.org").returncode == 0
    records = audit_records(tmp_path)
    assert [record["kind"] for record in records] == [
        "admin_override", "tls_requirement", "admin_override", "tls_requirement",
        "admin_override"]
    assert records[0]["action"] == "set-tls"
    assert records[0]["target"] == "example.org"
    assert records[1]["new"] == "encrypt"
    assert records[1]["source"] == "admin"
    assert records[3]["new"] == "none"
    assert records[4]["action"] == "purge-domain-facts"
    missing = postveil("domain", "-c", config, "show", "example.org")
    assert missing.returncode == 1
    assert "not in the cache" in missing.stderr
    assert postveil("domain", "-c", config, "set", "bad..name", "--tls", "secure").returncode == 2


def test_daemon_unix_sockets(tmp_path: Path) -> None:
    socketmap_path = tmp_path / "run" / "socketmap.sock"
    policy_path = tmp_path / "run" / "policy.sock"
    config = tmp_path / "postveil.yaml"
    config.write_text(
        audit_section(tmp_path) +
        "policyd:\n"
        f"  socketmap_listen: unix:{socketmap_path}\n"
        f"  policy_listen: unix:{policy_path}\n"
        f"  cache_path: {tmp_path / 'facts.sqlite3'}\n"
        "  postfix_version: '3.7.11'\n"
        "dns:\n"
        f"  nameservers: ['127.0.0.1:{free_port()}']\n"
    )
    assert postveil("domain", "-c", str(config), "set", "example.org", "--tls", "encrypt").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "postveil.policyd.daemon", "-c", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (socketmap_path.exists() and policy_path.exists()):
            assert time.monotonic() < deadline, "unix sockets did not appear within 20 s"
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(socketmap_path))
            sock.sendall(encode(b"postveil example.org"))
            assert NetstringDecoder(1000).feed(sock.recv(4096)) == [b"OK encrypt protocols=>=TLSv1.2"]
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(policy_path))
            sock.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                         b"sender=a@example.com\nrecipient=b@example.org\n\n")
            assert sock.recv(4096) == b"action=DUNNO\n\n"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_daemon_invalid_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text("policyd:\n  socketmap_listen: nowhere\n")
    result = subprocess.run([sys.executable, "-m", "postveil.policyd.daemon", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "socketmap_listen" in result.stderr
