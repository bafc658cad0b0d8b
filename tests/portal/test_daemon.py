"""postveil-portal's start-up checks, and a real process that serves and stops on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from postveil.harness.net import free_port
from postveil.portal.daemon import main
from postveil.portal.store import PortalStore
from postveil.startup import EX_CONFIG
from tests.portal.conftest import write_config

SOURCE_DIRECTORY = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 20.0


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Put back the root logger's handlers after main() replaced them with its own,
    so later tests still write to the session log that the leak scan reads."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def test_exits_78_without_base_url(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)

    assert main(["-c", str(config)]) == EX_CONFIG
    assert "portal.base_url is not set" in capfd.readouterr().err


def test_exits_78_with_open_key_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, base_url="https://secure.example.org")
    os.chmod(tmp_path / "portal.key", 0o644)

    assert main(["-c", str(config)]) == EX_CONFIG
    error = capfd.readouterr().err
    assert "has mode 0644" in error
    assert "chmod 600" in error


def test_exits_78_with_missing_key_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, base_url="https://secure.example.org")
    (tmp_path / "portal.key").unlink()

    assert main(["-c", str(config)]) == EX_CONFIG
    assert "cannot read portal key" in capfd.readouterr().err


def test_exits_78_when_store_unavailable(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = write_config(
        tmp_path, base_url="https://secure.example.org", store_directory=str(blocker / "store")
    )

    assert main(["-c", str(config)]) == EX_CONFIG
    assert "cannot open the portal store" in capfd.readouterr().err


def test_exits_78_with_invalid_config(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(yaml.safe_dump({"portal": {"base_url": "http://portal.example.org"}}))

    assert main(["-c", str(config)]) == EX_CONFIG
    assert "must use https" in capfd.readouterr().err


def test_exits_78_with_missing_certificate(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        base_url="https://secure.example.org",
        tls_certificate=str(tmp_path / "missing.pem"),
        tls_key=str(tmp_path / "missing.key"),
    )

    assert main(["-c", str(config)]) == EX_CONFIG
    assert "cannot load portal.tls_certificate" in capfd.readouterr().err


def wait_for_status(url: str, process: subprocess.Popen[bytes], context: ssl.SSLContext) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, "postveil-portal exited early"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"postveil-portal did not answer within {START_TIMEOUT} s")


def test_serves_https_and_stops_on_sigterm(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "portal.pem"))
    certificate.private_key_pem.write_to_path(str(tmp_path / "portal-key.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    base_url = f"https://127.0.0.1:{port}"
    config = write_config(
        tmp_path,
        base_url=base_url,
        listen=f"127.0.0.1:{port}",
        tls_certificate=str(tmp_path / "portal.pem"),
        tls_key=str(tmp_path / "portal-key.pem"),
        notify_relay=f"127.0.0.1:{free_port()}",
    )
    store = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
    token = store.deposit(
        b"Subject: test\r\n\r\nbody\r\n",
        sender="clinic@example.org",
        recipients=["pat@example.org"],
        retention=3600,
    ).tokens[0][1]
    store.close()

    log_path = tmp_path / "portal.log"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SOURCE_DIRECTORY), os.environ.get("PYTHONPATH", "")]),
        "NOTIFY_SOCKET": "",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "postveil.portal.daemon", "-c", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        assert wait_for_status(f"{base_url}/m/{token}", process, context) == 200
        assert wait_for_status(f"{base_url}/m/{'x' * 43}", process, context) == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    log = log_path.read_text()
    assert "purged 0 expired message(s)" in log
    assert "ready on https://" in log
    assert "received SIGTERM: stopping" in log
    assert token not in log


def test_module_run_parses_without_warning(tmp_path: Path) -> None:
    """``python -m postveil.portal``, as the demo runs it, shows a message page and
    an attachment without a RuntimeWarning from the parsing processes."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path,
        base_url=base_url,
        listen=f"127.0.0.1:{port}",
        notify_relay=f"127.0.0.1:{free_port()}",
    )
    store = PortalStore.open(tmp_path / "store", tmp_path / "portal.key")
    raw = (
        b"Subject: test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--b\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="lab.txt"\r\n\r\nvalues\r\n--b--\r\n'
    )
    token = store.deposit(
        raw, sender="clinic@example.org", recipients=["pat@example.org"], retention=3600
    ).tokens[0][1]
    code = store.issue_code(token, lifetime=600, per_hour=5).code
    assert code is not None
    session = store.check_code(token, code, attempts=5, session_lifetime=600).session
    assert session is not None
    store.close()

    log_path = tmp_path / "portal.log"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SOURCE_DIRECTORY), os.environ.get("PYTHONPATH", "")]),
        "NOTIFY_SOCKET": "",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "postveil.portal", "-c", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    context = ssl.create_default_context()
    try:
        assert wait_for_status(f"{base_url}/m/{token}", process, context) == 200
        for path in ("/message", "/part/1"):
            request = urllib.request.Request(
                f"{base_url}/m/{token}{path}", headers={"Cookie": f"postveil_session={session}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    log = log_path.read_text()
    assert "opened by pat@example.org" in log
    assert "part 1 downloaded by pat@example.org" in log
    assert "RuntimeWarning" not in log
