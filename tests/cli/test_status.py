"""``postveil status``: the probes' wire formats, the audit and key checks, and the
whole command against real daemons on loopback."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from postveil.audit import generate_key_file
from postveil.cli import status_cmd, status_probes
from postveil.cli.status_cmd import (
    CheckResult,
    State,
    check_audit_head,
    check_audit_key,
    check_classifier,
    check_milter,
    check_pgp_keys,
    check_smime_certificates,
    overall_state,
)
from postveil.cli.status_probes import Endpoint, ProbeError
from postveil.config import Config, load_config
from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import free_port
from postveil.harness.pki import TestPKI
from postveil.harness.recipients import SmimeRecipient
from postveil.milter.daemon import READY_MESSAGE
from postveil.policyd.daemon import READY_MESSAGE as POLICYD_READY
from postveil.portal.store import generate_master_key
from tests.classifier.conftest import start_classifier, stop_classifier

# -- wire formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "data", "expected"),
    [
        (b"Q", b"", b"\x00\x00\x00\x01Q"),
        (b"O", b"\x00\x00\x00\x06", b"\x00\x00\x00\x05O\x00\x00\x00\x06"),
        (b"A", b"x" * 300, b"\x00\x00\x01\x2dA" + b"x" * 300),
    ],
)
def test_milter_packet_framing(command: bytes, data: bytes, expected: bytes) -> None:
    assert status_probes.milter_packet(command, data) == expected


def test_milter_packet_rejects_long_command() -> None:
    with pytest.raises(ValueError, match="one byte"):
        status_probes.milter_packet(b"OO")


def test_optneg_request_offers_postfix_options() -> None:
    packet = status_probes.optneg_request()

    assert packet[:4] == struct.pack("!I", 13)
    assert packet[4:5] == b"O"
    assert struct.unpack("!III", packet[5:]) == (6, 0x1FF, 0x1FFFFF)


@pytest.mark.parametrize(
    ("header", "length"),
    [(b"\x00\x00\x00\x0d", 13), (b"\x00\x00\x00\x01", 1), (b"\x00\x01\x00\x00", 65536)],
)
def test_milter_length_valid(header: bytes, length: int) -> None:
    assert status_probes.parse_milter_length(header) == length


@pytest.mark.parametrize("header", [b"\x00\x00\x00\x00", b"\x00\x01\x00\x01", b"\xff\xff\xff\xff"])
def test_milter_length_invalid(header: bytes) -> None:
    with pytest.raises(ProbeError, match="invalid milter reply length"):
        status_probes.parse_milter_length(header)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (b"O" + struct.pack("!III", 6, 0x1FF, 0x100000), (6, 0x1FF, 0x100000)),
        # libmilter appends the macro lists the milter requested (SETSYMLIST).
        (b"O" + struct.pack("!III", 6, 0x1FF, 0) + b"\x00\x00\x00\x02i\x00", (6, 0x1FF, 0)),
    ],
)
def test_optneg_reply_valid(packet: bytes, expected: tuple[int, int, int]) -> None:
    options = status_probes.parse_optneg_reply(packet)

    assert (options.version, options.actions, options.protocol) == expected


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"t" + struct.pack("!III", 6, 0, 0), "expected an option negotiation reply"),
        (b"O" + struct.pack("!II", 6, 0), "8 bytes of data, expected at least 12"),
        (b"O", "0 bytes of data"),
    ],
)
def test_optneg_reply_invalid(packet: bytes, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        status_probes.parse_optneg_reply(packet)


def test_socketmap_request_is_ip_literal() -> None:
    assert status_probes.SOCKETMAP_REQUEST == b"20:postveil [127.0.0.1],"


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        (b"9:NOTFOUND ,", b"NOTFOUND "),
        (b"9:NOTFOU", b""),
        (b"", b""),
        (b"14:TEMP try later,", b"TEMP try later"),
    ],
)
def test_socketmap_reply_parse(data: bytes, payload: bytes) -> None:
    assert status_probes.parse_socketmap_reply(data) == payload


@pytest.mark.parametrize("data", [b"x:NOTFOUND ,", b"9:NOTFOUND ;", b"01:x,"])
def test_socketmap_reply_invalid(data: bytes) -> None:
    with pytest.raises(ProbeError, match="invalid socketmap reply"):
        status_probes.parse_socketmap_reply(data)


@pytest.mark.parametrize(
    ("data", "action"),
    [
        (b"action=DUNNO\n\n", "DUNNO"),
        (b"action=DUNNO\n", None),
        (b"", None),
        (b"action=451 4.4.3 try later\n\n", "451 4.4.3 try later"),
        (b"other=1\naction=OK\n\n", "OK"),
    ],
)
def test_policy_reply_parse(data: bytes, action: str | None) -> None:
    assert status_probes.parse_policy_reply(data) == action


def test_policy_reply_without_action() -> None:
    with pytest.raises(ProbeError, match="no action= line"):
        status_probes.parse_policy_reply(b"result=DUNNO\n\n")


@pytest.mark.parametrize(
    ("spec", "endpoint"),
    [
        ("unix:/run/milter.sock", Endpoint(path="/run/milter.sock")),
        ("local:/run/milter.sock", Endpoint(path="/run/milter.sock")),
        ("inet:8899@127.0.0.1", Endpoint(host="127.0.0.1", port=8899)),
        ("inet6:8899@::1", Endpoint(host="::1", port=8899)),
        ("inet6:8899@[::1]", Endpoint(host="::1", port=8899)),
    ],
)
def test_milter_endpoint(spec: str, endpoint: Endpoint) -> None:
    assert status_probes.milter_endpoint(spec) == endpoint


@pytest.mark.parametrize(
    ("spec", "endpoint", "text"),
    [
        ("unix:/run/policyd.sock", Endpoint(path="/run/policyd.sock"), "/run/policyd.sock"),
        ("inet:127.0.0.1:10461", Endpoint(host="127.0.0.1", port=10461), "127.0.0.1:10461"),
        ("inet:[::1]:10461", Endpoint(host="::1", port=10461), "[::1]:10461"),
    ],
)
def test_listen_endpoint(spec: str, endpoint: Endpoint, text: str) -> None:
    assert status_probes.listen_endpoint(spec) == endpoint
    assert str(endpoint) == text


# -- states and file checks --------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "overall"),
    [
        ([State.OK, State.SKIPPED], State.OK),
        ([State.SKIPPED], State.OK),
        ([State.OK, State.WARNING], State.WARNING),
        ([State.UNKNOWN, State.OK], State.UNKNOWN),
        ([State.UNKNOWN, State.WARNING], State.WARNING),
        ([State.WARNING, State.CRITICAL, State.UNKNOWN], State.CRITICAL),
    ],
)
def test_overall_state(states: list[State], overall: State) -> None:
    results = [CheckResult(f"check{i}", state, "") for i, state in enumerate(states)]

    assert overall_state(results) is overall


def minimal_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    document = {
        "audit": {"directory": str(tmp_path / "audit"), "key_file": str(tmp_path / "audit.key")}
    }
    document.update(sections)
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


def write_head(tmp_path: Path, content: str) -> None:
    (tmp_path / "audit").mkdir(exist_ok=True)
    (tmp_path / "audit" / "audit.head").write_text(content)


HEAD_TIME = "2026-03-01T12:00:00.000000Z"
HEAD_EPOCH = 1772366400.0


@pytest.mark.parametrize(
    ("age", "max_age", "state", "detail"),
    [
        (60.0, 86400.0, State.OK, "last record #7 written 60s ago"),
        (3 * 3600.0, 86400.0, State.OK, "last record #7 written 3h ago"),
        (25 * 3600.0, 86400.0, State.WARNING, "last record #7 written 25h ago, more than 24h"),
        (10 * 86400.0, 0.0, State.OK, "last record #7 written 10d ago"),
    ],
)
def test_audit_head_age(
    tmp_path: Path, age: float, max_age: float, state: State, detail: str
) -> None:
    write_head(
        tmp_path, json.dumps({"seq": 7, "hash": "ab", "file": "audit.jsonl", "time": HEAD_TIME})
    )

    result = check_audit_head(minimal_config(tmp_path), max_age, now=HEAD_EPOCH + age)

    assert result.state is state
    assert result.detail == detail


@pytest.mark.parametrize("content", ["", "{", '{"seq": 1}', '{"seq": 1, "time": "yesterday"}'])
def test_audit_head_invalid(tmp_path: Path, content: str) -> None:
    write_head(tmp_path, content)

    result = check_audit_head(minimal_config(tmp_path), 86400.0)

    assert result.state is State.CRITICAL
    assert "is not a valid head record" in result.detail


def test_audit_head_missing(tmp_path: Path) -> None:
    result = check_audit_head(minimal_config(tmp_path), 86400.0)

    assert result.state is State.CRITICAL
    assert "does not exist" in result.detail


@pytest.mark.parametrize(
    ("mode", "state", "detail"),
    [
        (0o600, State.OK, "mode 0600"),
        (0o400, State.OK, "mode 0400"),
        (0o640, State.CRITICAL, "mode 0640, which the writers reject"),
        (0o604, State.CRITICAL, "mode 0604, which the writers reject"),
        (None, State.CRITICAL, "does not exist"),
    ],
)
def test_audit_key(tmp_path: Path, mode: int | None, state: State, detail: str) -> None:
    if mode is not None:
        generate_key_file(tmp_path / "audit.key")
        os.chmod(tmp_path / "audit.key", mode)

    result = check_audit_key(minimal_config(tmp_path))

    assert result.state is state
    assert detail in result.detail


def test_expiring_certificate_warns(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path / "pki")
    (tmp_path / "smime").mkdir()
    # The harness issues S/MIME certificates valid for 365 days.
    SmimeRecipient.create("pat@example.org", pki, tmp_path / "smime")
    config = minimal_config(
        tmp_path,
        smime={"certificate_dir": str(tmp_path / "smime"), "trust_store": str(pki.ca_path)},
    )

    assert check_smime_certificates(config, 30).state is State.OK
    later = check_smime_certificates(config, 400)
    assert later.state is State.WARNING
    assert later.detail == (
        "1 certificate(s) stop being usable within 400 days; see 'postveil certs list --expiring 400'"
    )


def test_smime_directory_missing_is_skipped(tmp_path: Path) -> None:
    config = minimal_config(tmp_path, smime={"certificate_dir": str(tmp_path / "none")})

    assert check_smime_certificates(config, 14).state is State.SKIPPED


# -- timeouts ----------------------------------------------------------------------


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never replies."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_milter_timeout_is_critical(tmp_path: Path, silent_listener: int) -> None:
    config = minimal_config(tmp_path, milter={"socket": f"inet:{silent_listener}@127.0.0.1"})

    started = time.monotonic()
    result = check_milter(config, 0.5)

    assert time.monotonic() - started < 3
    assert result.state is State.CRITICAL
    assert "no complete reply within the timeout" in result.detail


def test_socketmap_timeout(silent_listener: int) -> None:
    with pytest.raises(status_probes.ProbeTimeout):
        status_probes.probe_socketmap(Endpoint(host="127.0.0.1", port=silent_listener), 0.5)


def test_policy_timeout(silent_listener: int) -> None:
    with pytest.raises(status_probes.ProbeTimeout):
        status_probes.probe_policy(Endpoint(host="127.0.0.1", port=silent_listener), 0.5)


def test_http_timeout(silent_listener: int) -> None:
    with pytest.raises(status_probes.ProbeTimeout):
        status_probes.probe_http("127.0.0.1", silent_listener, "/healthz", https=False, timeout=0.5)


# -- the command against real daemons -----------------------------------------------


def postveil_status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "status", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def write_daemons_config(tmp_path: Path) -> Path:
    generate_key_file(tmp_path / "audit.key")
    generate_master_key(tmp_path / "portal.key")
    (tmp_path / "gnupg").mkdir(mode=0o700)
    (tmp_path / "smime").mkdir()
    portal_port = free_port()
    document = {
        "milter": {
            "socket": f"unix:{tmp_path / 'milter.sock'}",
            "socket_mode": "0660",
            "socket_group": None,
            "check_recipient_rewrites": False,
        },
        "policyd": {
            "socketmap_listen": f"inet:127.0.0.1:{free_port()}",
            "policy_listen": f"unix:{tmp_path / 'policy.sock'}",
            "cache_path": str(tmp_path / "facts.sqlite3"),
            "postfix_version": "3.7.11",
        },
        "portal": {
            "base_url": f"http://127.0.0.1:{portal_port}/pickup",
            "listen": f"127.0.0.1:{portal_port}",
            "store_directory": str(tmp_path / "store"),
            "key_file": str(tmp_path / "portal.key"),
            "notify_relay": f"127.0.0.1:{free_port()}",
        },
        "pgp": {"gnupg_home": str(tmp_path / "gnupg")},
        "smime": {
            "certificate_dir": str(tmp_path / "smime"),
            "trust_store": str(TestPKI(tmp_path / "pki").ca_path),
        },
        "audit": {"directory": str(tmp_path / "audit"), "key_file": str(tmp_path / "audit.key")},
        # A closed loopback port: no daemon may query a resolver in this test.
        "dns": {
            "nameservers": [f"127.0.0.1:{free_port()}"],
            "timeout": "200ms",
            "lifetime": "500ms",
        },
        "logging": {"level": "DEBUG"},
    }
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[dict[str, DaemonProcess]]:
    """postveil-milter, postveil-policyd and postveil-portal on one configuration."""
    config_path = write_daemons_config(tmp_path)
    config = load_config(config_path)
    socketmap = status_probes.listen_endpoint(config.policyd.socketmap_listen)
    portal_host, portal_port = config.portal.listen_address
    started: dict[str, DaemonProcess] = {}
    try:
        started["milter"] = DaemonProcess(
            "postveil.milter.daemon", config_path, tmp_path / "milter.log", ready=lambda: True
        ).start()
        started["milter"].wait_for_log(READY_MESSAGE)
        started["policyd"] = DaemonProcess(
            "postveil.policyd.daemon",
            config_path,
            tmp_path / "policyd.log",
            ready=lambda: (
                can_connect(socketmap.host, socketmap.port) and (tmp_path / "policy.sock").exists()
            ),
        ).start()
        started["policyd"].wait_for_log(POLICYD_READY)
        started["portal"] = DaemonProcess(
            "postveil.portal.daemon",
            config_path,
            tmp_path / "portal.log",
            ready=lambda: can_connect(portal_host, portal_port),
        ).start()
        # Each daemon logs this after it wrote its start record to the audit trail.
        started["portal"].wait_for_log(" ready on http://")
        yield started
    finally:
        for daemon in started.values():
            daemon.terminate()


def state_of(output: str, name: str) -> str:
    for line in output.splitlines()[1:]:
        state, _, rest = line.partition(" ")
        if rest.startswith(f"{name}:"):
            return state
    raise AssertionError(f"no line for {name} in:\n{output}")


def test_status_ok_then_critical(tmp_path: Path, daemons: dict[str, DaemonProcess]) -> None:
    config = tmp_path / "postveil.yaml"
    audit_before = (tmp_path / "audit" / "audit.jsonl").read_bytes()

    result = postveil_status(config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "postveil status OK: 8 OK, 1 SKIPPED"
    names = (
        "milter",
        "policyd-socketmap",
        "policyd-policy",
        "portal",
        "audit-head",
        "audit-key",
        "pgp-keys",
    )
    for name in names:
        assert state_of(result.stdout, name) == "OK"
    assert state_of(result.stdout, "classifier") == "SKIPPED"
    assert state_of(result.stdout, "smime-certificates") == "OK"
    assert result.stderr == ""

    # The probes wrote no audit record, no warning or error to a log, and no cache entry.
    assert (tmp_path / "audit" / "audit.jsonl").read_bytes() == audit_before
    for daemon in daemons.values():
        log = daemon.log_text()
        assert "INFO" in log
        for line in log.splitlines():
            assert not line.startswith(("WARNING", "ERROR", "CRITICAL")), line
    listed = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "domain", "-c", str(config), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0
    assert "127.0.0.1" not in listed.stdout

    daemons["policyd"].terminate()
    stopped = postveil_status(config, "--json")

    assert stopped.returncode == 2
    report = json.loads(stopped.stdout)
    assert report["state"] == "CRITICAL"
    assert report["exit_status"] == 2
    states = {check["name"]: check["state"] for check in report["checks"]}
    assert states["policyd-socketmap"] == "CRITICAL"
    assert states["policyd-policy"] == "CRITICAL"
    assert states["milter"] == "OK"
    assert states["portal"] == "OK"

    daemons["milter"].terminate()
    no_milter = postveil_status(config)

    assert no_milter.returncode == 2
    assert state_of(no_milter.stdout, "milter") == "CRITICAL"
    assert "No such file or directory" in no_milter.stdout


def test_status_config_unloadable(tmp_path: Path) -> None:
    (tmp_path / "postveil.yaml").write_text("milter:\n  colour: blue\n")

    result = postveil_status(tmp_path / "postveil.yaml")

    assert result.returncode == 3
    assert result.stdout.splitlines() == [
        "postveil status UNKNOWN: 1 UNKNOWN",
        f"UNKNOWN config: cannot load {tmp_path / 'postveil.yaml'}",
    ]
    assert "colour" in result.stderr


def test_status_usage_error_is_unknown(tmp_path: Path) -> None:
    assert postveil_status(tmp_path / "postveil.yaml", "--timeout", "0").returncode == 3
    assert postveil_status(tmp_path / "postveil.yaml", "--no-such-option").returncode == 3


@pytest.fixture
def https_health_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server on loopback that replies OK to /healthz, with a certificate for
    another name, as a portal that serves HTTPS itself has."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("secure.example.org").configure_cert(context)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            body = b"OK\n" if self.path == "/pickup/healthz" else b"not found\n"
            self.send_response(200 if body == b"OK\n" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_probe_over_tls(https_health_server: int) -> None:
    status_probes.probe_http(
        "127.0.0.1", https_health_server, "/pickup/healthz", https=True, timeout=5
    )

    with pytest.raises(ProbeError, match="returned status 404"):
        status_probes.probe_http(
            "127.0.0.1", https_health_server, "/healthz", https=True, timeout=5
        )
    with pytest.raises(ProbeError, match="HTTP request to 127.0.0.1:.* failed"):
        status_probes.probe_http(
            "127.0.0.1", https_health_server, "/pickup/healthz", https=False, timeout=5
        )


@pytest.mark.skipif(
    os.environ.get("POSTVEIL_SKIP_CLASSIFIER") == "1",
    reason="POSTVEIL_SKIP_CLASSIFIER=1: the classifier extra is not installed",
)
def test_classifier_ok_then_critical(tmp_path: Path) -> None:
    (tmp_path / "classifierd").mkdir()
    running = start_classifier(tmp_path / "classifierd")
    try:
        config = minimal_config(tmp_path, classifier={"enabled": True, "socket": running.socket})

        result = check_classifier(config, 30)

        assert result.state is State.OK, result.detail
        assert "empty text scored" in result.detail
    finally:
        stop_classifier(running)
    # Only the lines before the stop: a stop that cancels a connection's task at once
    # can make asyncio log an error, which no probe causes.
    log = running.log.read_text().partition("received SIGTERM")[0]
    assert "scored 0 words" in log
    for line in log.splitlines():
        assert not line.startswith(("WARNING", "ERROR", "CRITICAL")), line

    stopped = check_classifier(config, 3)

    assert stopped.state is State.CRITICAL
    assert "cannot reach postveil-classifierd" in stopped.detail


def test_classifier_disabled_is_skipped(tmp_path: Path) -> None:
    assert check_classifier(minimal_config(tmp_path), 3).state is State.SKIPPED


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_pgp_keys_listed_as_home_owner() -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("user nobody does not exist")
    # pytest's base temporary directory is closed to other users, so this one is in /tmp.
    base = Path(tempfile.mkdtemp(prefix="postveil-status-"))
    try:
        base.chmod(0o711)
        home = base / "gnupg"
        home.mkdir(mode=0o700)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        config = minimal_config(base, pgp={"gnupg_home": str(home)})

        result = check_pgp_keys(config, 14)

        assert result.state is State.OK, result.detail
        # gpg created its keyring files as the home's owner, not as root.
        created = list(home.iterdir())
        assert created
        for path in created:
            assert path.stat().st_uid == nobody.pw_uid, path
    finally:
        shutil.rmtree(base)


def test_failing_check_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every real failure that the checks know of has its own state, so an unexpected
    # one can only be made by replacing a check.
    def broken(config: Config) -> CheckResult:
        raise RuntimeError("text that must not be shown")

    monkeypatch.setattr(status_cmd, "check_audit_key", broken)

    config = minimal_config(
        tmp_path,
        milter={"socket": f"unix:{tmp_path / 'milter.sock'}"},
        policyd={
            "socketmap_listen": f"inet:127.0.0.1:{free_port()}",
            "policy_listen": f"inet:127.0.0.1:{free_port()}",
        },
        pgp={"gnupg_home": str(tmp_path / "gnupg")},
        smime={"certificate_dir": str(tmp_path / "smime")},
    )

    results = status_cmd.run_checks(config, 0.5, 0.0, 14)

    by_name = {result.name: result for result in results}
    assert len(by_name) == 9
    assert by_name["audit-key"].state is State.UNKNOWN
    assert by_name["audit-key"].detail == "check failed: RuntimeError"
    assert by_name["audit-head"].state is State.CRITICAL
    assert by_name["milter"].state is State.CRITICAL
    assert by_name["pgp-keys"].state is State.SKIPPED
