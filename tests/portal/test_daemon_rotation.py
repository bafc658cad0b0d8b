"""A running postveil-portal process and a ``postveil portal rekey`` in another process:
the daemon stops digesting codes with the key that the rotation retired."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postveil.cli.main import main
from postveil.harness.net import free_port
from postveil.portal.keys import master_key_id
from postveil.portal.store import (
    KEY_RELOAD_INTERVAL,
    PortalStore,
    generate_master_key,
    load_master_key,
)
from tests.portal.conftest import RECIPIENT, SENDER, MailSink, sample_message, write_config

SOURCE_DIRECTORY = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 20.0


class Daemon:
    """A postveil-portal process on 127.0.0.1, with its log in a file."""

    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(SOURCE_DIRECTORY), os.environ.get("PYTHONPATH", "")]
            ),
            "NOTIFY_SOCKET": "",
        }
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "postveil.portal.daemon", "-c", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def request(self, method: str, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"postveil-portal exited early:\n{self.log()}"
            try:
                self.request("GET", path)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"postveil-portal did not answer within {START_TIMEOUT} s")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def daemon_files(tmp_path: Path, mail_sink: MailSink) -> Iterator[tuple[Path, int]]:
    port = free_port()
    config = write_config(
        tmp_path,
        base_url=f"http://127.0.0.1:{port}",
        listen=f"127.0.0.1:{port}",
        notify_relay=f"127.0.0.1:{mail_sink.port}",
    )
    yield config, port


def code_works_with_only(tmp_path: Path, key_file: Path, token: str, code: str) -> bool:
    """Check ``code`` in a store that has only ``key_file``, so it matches only a digest
    made with that key. The check uses the code up."""
    store = PortalStore.open(tmp_path / "store", key_file)
    try:
        check = store.check_code(token, code, attempts=5, session_lifetime=60)
    finally:
        store.close()
    return check.outcome == "ok"


def test_daemon_follows_rotation_for_codes(
    tmp_path: Path, mail_sink: MailSink, daemon_files: tuple[Path, int]
) -> None:
    config, port = daemon_files
    old_key = tmp_path / "portal.key"
    new_key = tmp_path / "portal-new.key"
    store = PortalStore.open(tmp_path / "store", old_key)
    token = store.deposit(
        sample_message(), sender=SENDER, recipients=[RECIPIENT], retention=3600
    ).tokens[0][1]
    store.close()
    code_path = f"/m/{token}/code"

    daemon = Daemon(config, port, tmp_path / "portal.log")
    try:
        daemon.wait_ready(f"/m/{token}")
        assert daemon.request("POST", code_path) == 303
        assert code_works_with_only(tmp_path, old_key, token, mail_sink.last_code())

        # The rotation runs with a configuration file of its own, so the daemon's
        # configuration still names only the retired key.
        generate_master_key(new_key)
        rekey_config = write_config(
            tmp_path, key_file=str(new_key), previous_key_files=[str(old_key)]
        )
        rekey_config = rekey_config.rename(tmp_path / "rekey.yaml")
        assert main(["portal", "rekey", "--reason", "test rotation", "-c", str(rekey_config)]) == 0
        mails_before = len(mail_sink.messages)
        rejected_at = time.monotonic()

        assert daemon.request("POST", code_path) == 503
        assert len(mail_sink.messages) == mails_before
        old_id = master_key_id(load_master_key(old_key))
        new_id = master_key_id(load_master_key(new_key))
        log = daemon.log()
        assert f"cannot issue a code for {RECIPIENT}" in log
        assert f"master key id {old_id}, which 'postveil portal rekey' retired" in log

        # Once the daemon's configuration names the new key, the next code request
        # after the reload interval reads it and digests the code with it.
        write_config(
            tmp_path,
            base_url=f"http://127.0.0.1:{port}",
            listen=f"127.0.0.1:{port}",
            notify_relay=f"127.0.0.1:{mail_sink.port}",
            key_file=str(new_key),
            previous_key_files=[str(old_key)],
        )
        time.sleep(max(0.0, KEY_RELOAD_INTERVAL - (time.monotonic() - rejected_at)) + 0.2)
        assert daemon.request("POST", code_path) == 303
        assert len(mail_sink.messages) == mails_before + 1
        code = mail_sink.last_code()
        assert not code_works_with_only(tmp_path, old_key, token, code)
        assert code_works_with_only(tmp_path, new_key, token, code)
        log = daemon.log()
        assert (
            f"retired master key id {old_id}: codes are now digested with master key id {new_id}"
            in log
        )
        assert daemon.request("POST", code_path) == 303
    finally:
        daemon.stop()

    assert daemon.process.returncode == 0
    log = daemon.log()
    assert token not in log
    assert code not in log
