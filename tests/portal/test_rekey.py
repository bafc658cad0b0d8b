"""Rotation of the portal's master key: ``postveil portal rekey`` with real SQLite, real
key files, a real intake process and a rotation killed half-way."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postveil.audit import generate_key_file
from postveil.cli.main import main
from postveil.config import parse_config
from postveil.harness.smtp import SmtpSink
from postveil.portal.daemon import KeyFileReloader, open_resources
from postveil.portal.intake import Intake
from postveil.portal.keys import master_key_id
from postveil.portal.rekey import rewrap_all
from postveil.portal.seal import SEAL_HEADER, PortalSeal
from postveil.portal.store import (
    PortalError,
    PortalKeyError,
    PortalStore,
    generate_master_key,
    load_master_key,
)

SOURCE_DIRECTORY = Path(__file__).resolve().parents[2] / "src"
RECIPIENT = "pat@example.net"
SENDER = "doctor@clinic.test"


@dataclass
class Rotation:
    """Files of one portal: an old and a new master key, a store, an audit trail."""

    tmp: Path
    sink_port: int

    @property
    def old_key(self) -> Path:
        return self.tmp / "keys" / "portal-old.key"

    @property
    def new_key(self) -> Path:
        return self.tmp / "keys" / "portal-new.key"

    @property
    def store_directory(self) -> Path:
        return self.tmp / "store"

    @property
    def audit_directory(self) -> Path:
        return self.tmp / "audit"

    def write_config(
        self, key_file: Path, previous: Sequence[Path] = (), name: str = "postveil.yaml"
    ) -> Path:
        keys = self.tmp / "keys"
        settings = {
            "portal": {
                "intake_address": "intake@portal.test",
                "seal_key_file": str(keys / "seal.key"),
                "key_file": str(key_file),
                "previous_key_files": [str(path) for path in previous],
                "store_directory": str(self.store_directory),
                "base_url": "https://portal.test",
                "notify_relay": f"127.0.0.1:{self.sink_port}",
            },
            "audit": {
                "directory": str(self.audit_directory),
                "key_file": str(keys / "audit.key"),
                "fsync": "never",
            },
        }
        path = self.tmp / name
        path.write_text(json.dumps(settings))
        return path

    def open(self, key_file: Path, previous: Sequence[Path] = (), **options: Any) -> PortalStore:
        return PortalStore.open(self.store_directory, key_file, previous, **options)

    def audit_records(self) -> list[dict[str, Any]]:
        path = self.audit_directory / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def key_ids_in_database(self) -> dict[str, str | None]:
        with sqlite3.connect(self.store_directory / "portal.sqlite3") as database:
            return dict(database.execute("SELECT id, key_id FROM messages"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.1", tls="none", port=0, hostname="relay.test") as server:
        yield server


@pytest.fixture
def rotation(tmp_path: Path, sink: SmtpSink) -> Rotation:
    keys = tmp_path / "keys"
    keys.mkdir()
    generate_key_file(keys / "audit.key")
    generate_master_key(keys / "seal.key", 0o640)
    generate_master_key(keys / "portal-old.key")
    return Rotation(tmp_path, sink.port)


@dataclass
class Stored:
    message_id: str
    token: str
    raw: bytes
    session: str = ""


def deposit_many(store: PortalStore, count: int, first: int = 0) -> list[Stored]:
    stored = []
    for number in range(first, first + count):
        raw = b"Subject: rotation\r\n\r\nmessage number %d\r\n" % number
        deposit = store.deposit(raw, sender=SENDER, recipients=[RECIPIENT], retention=3600)
        stored.append(Stored(deposit.message_id, deposit.tokens[0][1], raw))
    return stored


def open_sessions(store: PortalStore, messages: Sequence[Stored]) -> None:
    for message in messages:
        issued = store.issue_code(message.token, lifetime=600, per_hour=5)
        assert issued.code is not None
        checked = store.check_code(message.token, issued.code, attempts=5, session_lifetime=900)
        assert checked.session is not None
        message.session = checked.session


def assert_all_readable(store: PortalStore, messages: Sequence[Stored]) -> None:
    for message in messages:
        assert store.read_message(message.token, message.session) == message.raw, message.message_id


def key_table(output: str) -> dict[str, int]:
    """Return {key id: count} from the table that status and rekey print."""
    table = output.split("messages by master key id:\n", 1)[1]
    counts = {}
    for line in table.splitlines():
        if not line.startswith("  "):
            break
        key_id, count = line.split()[:2]
        counts[key_id] = int(count)
    return counts


def rekey_command(config: Path, *options: str) -> list[str]:
    return ["portal", "rekey", *options, "-c", str(config)]


# -- the whole rotation ------------------------------------------------------------


def test_rotation_with_messages_present(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    old_config = rotation.write_config(rotation.old_key)
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 45)
    open_sessions(store, messages)
    store.close()
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert main(["portal", "status", "-c", str(old_config)]) == 0
    assert key_table(capsys.readouterr().out) == {old_id: 45}

    assert main(["portal", "create-key", str(rotation.new_key)]) == 0
    created = capsys.readouterr().out
    new_hex = rotation.new_key.read_text().strip()
    new_id = master_key_id(bytes.fromhex(new_hex))
    assert f"master key id {new_id}" in created
    assert new_hex not in created
    assert (rotation.new_key.stat().st_mode & 0o777) == 0o600
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(["portal", "status", "-c", str(config)]) == 0
    before = capsys.readouterr().out
    assert key_table(before) == {new_id: 0, old_id: 45}
    assert "Run 'postveil portal rekey' before removing" in before

    assert main(rekey_command(config, "--reason", "yearly rotation")) == 0
    output = capsys.readouterr().out
    assert "encrypted 45 data key(s) again" in output
    assert key_table(output) == {new_id: 45, old_id: 0}
    assert "No message needs these previous key files any more" in output
    assert str(rotation.old_key) in output
    assert set(rotation.key_ids_in_database().values()) == {new_id}

    # Retired: the old key is gone from the configuration and from the disk.
    rotation.old_key.unlink()
    retired = rotation.open(rotation.new_key)
    assert_all_readable(retired, messages)
    retired.close()

    overrides = [r for r in rotation.audit_records() if r["kind"] == "admin_override"]
    assert len(overrides) == 1
    assert overrides[0]["action"] == "portal-rekey"
    assert overrides[0]["target"] == str(rotation.store_directory)
    assert overrides[0]["fingerprint"] == new_id
    assert overrides[0]["reason"] == "yearly rotation"
    assert overrides[0]["command"] == f"postveil portal rekey -c {config}"
    trail = (rotation.audit_directory / "audit.jsonl").read_text()
    assert new_hex not in trail


def test_rerun_after_finish_changes_nothing(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 3)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    assert main(rekey_command(config)) == 0
    capsys.readouterr()

    assert main(rekey_command(config)) == 0

    assert "nothing to do" in capsys.readouterr().out
    assert len([r for r in rotation.audit_records() if r["kind"] == "admin_override"]) == 1


# -- reading and storing while the rotation runs -----------------------------------


def test_reading_and_storing_during_rotation(rotation: Rotation) -> None:
    """Read with postveil-portal's old configuration and store with the intake's new
    one after every batch. An intake with the old configuration must not store."""
    old_config = rotation.write_config(rotation.old_key)
    daemon = rotation.open(rotation.old_key, key_loader=KeyFileReloader(str(old_config)))
    messages = deposit_many(daemon, 30)
    stale_intake = rotation.open(rotation.old_key)

    generate_master_key(rotation.new_key)
    rotation.write_config(rotation.new_key, [rotation.old_key])
    intake = rotation.open(rotation.new_key, [rotation.old_key])
    messages += deposit_many(intake, 2, first=100)
    # The daemon has not been restarted: it reads the new key from the files that
    # the configuration names now.
    open_sessions(daemon, messages)
    assert_all_readable(daemon, messages)

    rekey = rotation.open(rotation.new_key, [rotation.old_key])
    batches: list[int] = []

    def during_rotation(total: int) -> None:
        batches.append(total)
        assert_all_readable(daemon, messages)
        assert_all_readable(intake, messages)
        messages.extend(deposit_many(intake, 1, first=200 + total))
        open_sessions(daemon, messages[-1:])
        with pytest.raises(PortalKeyError, match="rotated to key id"):
            deposit_many(stale_intake, 1)

    result = rewrap_all(rekey, batch_size=7, after_batch=during_rotation)

    assert result.failures == ()
    assert result.rewrapped == 30
    assert batches == [7, 14, 21, 28, 30]
    new_id = master_key_id(load_master_key(rotation.new_key))
    assert set(rotation.key_ids_in_database().values()) == {new_id}
    # The stale intake's refused deposits left no file behind.
    files = {path.name for path in (rotation.store_directory / "messages").iterdir()}
    assert files == {message.message_id for message in messages}
    retired = rotation.open(rotation.new_key)
    assert_all_readable(retired, messages)
    for store in (daemon, stale_intake, intake, rekey, retired):
        store.close()


def test_code_issued_before_restart_still_matches(rotation: Rotation) -> None:
    before = rotation.open(rotation.old_key)
    (message,) = deposit_many(before, 1)
    issued = before.issue_code(message.token, lifetime=600, per_hour=5)
    assert issued.code is not None
    before.close()
    generate_master_key(rotation.new_key)

    after = rotation.open(rotation.new_key, [rotation.old_key])
    checked = after.check_code(message.token, issued.code, attempts=5, session_lifetime=900)

    assert checked.outcome == "ok"
    after.close()


def portal_copy(seal: PortalSeal, body: str) -> bytes:
    lines = [
        f"From: <{SENDER}>",
        f"To: <{RECIPIENT}>",
        "Subject: Results",
        f"X-Postveil-Portal-Recipient: {RECIPIENT}",
        f"{SEAL_HEADER}: {seal.make([RECIPIENT])}",
        "",
        body,
        "",
    ]
    return "\n".join(lines).encode()


def run_deliver(config: Path, raw: bytes) -> subprocess.CompletedProcess[bytes]:
    environment = dict(os.environ, PYTHONPATH=str(SOURCE_DIRECTORY))
    return subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "portal", "deliver", "-c", str(config)]
        + ["--queue-id", "4QrekeyQ1", "--sender", SENDER],
        input=raw,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_intake_process_during_rotation(rotation: Rotation, sink: SmtpSink) -> None:
    """Run the real ``postveil portal deliver`` during a rekey. With the new
    configuration it stores under the new key. With the old one it defers (75), so
    Postfix retries."""
    seal = PortalSeal.load(rotation.tmp / "keys" / "seal.key")
    stale_config = rotation.write_config(rotation.old_key, name="stale.yaml")
    store = rotation.open(rotation.old_key)
    deposit_many(store, 10)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    results: list[subprocess.CompletedProcess[bytes]] = []

    def deliver_both(total: int) -> None:
        if total == 5:
            results.append(run_deliver(config, portal_copy(seal, "stored during the rotation")))
            results.append(run_deliver(stale_config, portal_copy(seal, "stale intake")))

    rekey = rotation.open(rotation.new_key, [rotation.old_key])
    rewrap_all(rekey, batch_size=5, after_batch=deliver_both)
    rekey.close()

    fresh, stale = results
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith(b"stored as portal message ")
    assert stale.returncode == 75
    assert stale.stderr.startswith(b"4.")
    assert b"rotated to key id" in stale.stderr
    new_id = master_key_id(load_master_key(rotation.new_key))
    key_ids = rotation.key_ids_in_database()
    assert len(key_ids) == 11
    assert set(key_ids.values()) == {new_id}
    assert len(sink.messages) == 1


# -- interrupted rotation ----------------------------------------------------------

_KILLED_REKEY = """
import os, signal, sys
from postveil.portal.rekey import rewrap_all
from postveil.portal.store import PortalStore

directory, key_file, previous, stop_after = sys.argv[1:]
store = PortalStore.open(directory, key_file, [previous])

def kill_after(total):
    if total >= int(stop_after):
        os.kill(os.getpid(), signal.SIGKILL)

rewrap_all(store, batch_size=5, after_batch=kill_after)
"""


def test_crash_half_way_then_rerun(rotation: Rotation, capsys: pytest.CaptureFixture[str]) -> None:
    # SIGKILL is a real crash: no exception handler, rollback or close runs, and the
    # next opener finds the WAL as the dead process left it. A read-only file would
    # not stop these tests, which run as root.
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 23)
    open_sessions(store, messages)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    old_id = master_key_id(load_master_key(rotation.old_key))
    new_id = master_key_id(load_master_key(rotation.new_key))

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_REKEY, str(rotation.store_directory)]
        + [str(rotation.new_key), str(rotation.old_key), "10"],
        env=dict(os.environ, PYTHONPATH=str(SOURCE_DIRECTORY)),
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    key_ids = list(rotation.key_ids_in_database().values())
    assert key_ids.count(new_id) == 10
    assert key_ids.count(old_id) == 13
    half_way = rotation.open(rotation.new_key, [rotation.old_key])
    assert_all_readable(half_way, messages)
    half_way.close()

    assert main(rekey_command(config)) == 0
    assert "encrypted 13 data key(s) again" in capsys.readouterr().out
    assert set(rotation.key_ids_in_database().values()) == {new_id}
    retired = rotation.open(rotation.new_key)
    assert_all_readable(retired, messages)
    retired.close()


# -- errors ------------------------------------------------------------------------


def test_wrong_old_key_leaves_messages_untouched(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 3)
    store.close()
    generate_master_key(rotation.new_key)
    unrelated = rotation.tmp / "keys" / "unrelated.key"
    generate_master_key(unrelated)
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        before = dict(database.execute("SELECT id, wrapped_key FROM messages"))
    wrong = rotation.write_config(rotation.new_key, [unrelated])

    assert main(rekey_command(wrong)) == 1

    captured = capsys.readouterr()
    old_id = master_key_id(load_master_key(rotation.old_key))
    for message in messages:
        assert f"portal message {message.message_id} is encrypted with master key id {old_id}" in (
            captured.err
        )
    assert "3 data key(s) could not be decrypted" in captured.err
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        after = dict(database.execute("SELECT id, wrapped_key FROM messages"))
    assert after == before
    assert set(rotation.key_ids_in_database().values()) == {old_id}

    right = rotation.write_config(rotation.new_key, [rotation.old_key])
    assert main(rekey_command(right)) == 0


def test_damaged_data_key_is_reported(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    damaged, intact = deposit_many(store, 2)
    store.close()
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute(
            "UPDATE messages SET wrapped_key = zeroblob(60) WHERE id = ?", (damaged.message_id,)
        )
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(rekey_command(config)) == 1

    err = capsys.readouterr().err
    assert f"portal message {damaged.message_id} does not decrypt" in err
    assert "the database row is damaged" in err
    key_ids = rotation.key_ids_in_database()
    assert key_ids[intact.message_id] == master_key_id(load_master_key(rotation.new_key))
    assert key_ids[damaged.message_id] == master_key_id(load_master_key(rotation.old_key))


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "cannot read portal key"),
        ("open", "has mode 0644"),
        ("malformed", "expected 64 hex digits"),
    ],
)
def test_bad_new_key_file_changes_nothing(
    rotation: Rotation, capsys: pytest.CaptureFixture[str], problem: str, message: str
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    if problem == "open":
        generate_master_key(rotation.new_key, 0o644)
    elif problem == "malformed":
        rotation.new_key.write_text("not a key\n")
        rotation.new_key.chmod(0o600)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(rekey_command(config)) == 1

    err = capsys.readouterr().err
    assert message in err
    assert str(rotation.new_key) in err
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert set(rotation.key_ids_in_database().values()) == {old_id}
    assert rotation.audit_records() == []


def test_unwritable_audit_trail_changes_nothing(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    rotation.audit_directory.write_text("a file where the audit directory should be")
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(rekey_command(config)) == 1

    assert "nothing was changed" in capsys.readouterr().err
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert set(rotation.key_ids_in_database().values()) == {old_id}
    # A stale intake may still store: the rotation was not recorded in the store.
    stale = rotation.open(rotation.old_key)
    deposit_many(stale, 1)
    stale.close()


def test_rekey_with_older_configuration_refused(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    assert main(rekey_command(rotation.write_config(rotation.new_key, [rotation.old_key]))) == 0
    capsys.readouterr()

    assert main(rekey_command(rotation.write_config(rotation.old_key))) == 1

    assert "predates that rotation" in capsys.readouterr().err
    new_id = master_key_id(load_master_key(rotation.new_key))
    assert set(rotation.key_ids_in_database().values()) == {new_id}


def test_rekey_names_missing_previous_key(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second rotation whose configuration lists the wrong old key file is refused
    by rekey and by the intake, and both messages name the key file to add."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    assert main(rekey_command(rotation.write_config(rotation.new_key, [rotation.old_key]))) == 0
    capsys.readouterr()
    newest_key = rotation.tmp / "keys" / "portal-newest.key"
    generate_master_key(newest_key)
    new_id = master_key_id(load_master_key(rotation.new_key))

    # The administrator lists the key of the first rotation instead of the second's.
    wrong = rotation.write_config(newest_key, [rotation.old_key], name="wrong.yaml")
    assert main(rekey_command(wrong)) == 1

    error = capsys.readouterr().err
    assert f"rotated to master key id {new_id}" in error
    assert "nothing was changed" in error
    assert f"add the file of key id {new_id} to portal.previous_key_files" in error
    assert set(rotation.key_ids_in_database().values()) == {new_id}
    intake = rotation.open(newest_key, [rotation.old_key])
    with pytest.raises(PortalKeyError) as refused:
        deposit_many(intake, 1)
    intake.close()
    assert f"put the file of key id {new_id} in portal.previous_key_files" in str(refused.value)
    assert "restart" not in str(refused.value)


def test_second_rekey_at_once_refused(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    # The lock that a running rekey holds, taken by this process.
    fd = os.open(rotation.store_directory / "rekey.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert main(rekey_command(config)) == 1
    finally:
        os.close(fd)

    assert "another 'postveil portal rekey' is running" in capsys.readouterr().err
    assert rotation.audit_records() == []


def test_locked_database_gives_clear_error(rotation: Rotation) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    rekey = rotation.open(rotation.new_key, [rotation.old_key], timeout=0.2)
    other = sqlite3.connect(rotation.store_directory / "portal.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(PortalError, match="stayed locked by another process for 0.2 s"):
            rewrap_all(rekey)
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert rewrap_all(rekey).rewrapped == 2
    rekey.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what root is told; needs root")
def test_rekey_as_root_on_other_users_store(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    rotation.store_directory.mkdir(mode=0o700)
    os.chown(rotation.store_directory, 65534, 65534)
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(rekey_command(config)) == 1

    err = capsys.readouterr().err
    assert "not as root" in err
    assert f"postveil portal rekey -c {config}" in err
    assert main(rekey_command(config, "--reason", "yearly rotation")) == 1
    assert f"postveil portal rekey --reason 'yearly rotation' -c {config}" in (
        capsys.readouterr().err
    )
    assert list(rotation.store_directory.iterdir()) == []


def test_daemon_store_reads_new_key_before_restart(rotation: Rotation) -> None:
    """The store that postveil-portal opens at start reads a message that the intake
    stored under a key that the daemon's configuration did not name at start."""
    config_path = rotation.write_config(rotation.old_key)
    config = parse_config(config_path.read_bytes(), str(config_path))
    daemon, audit, _context = open_resources(config)
    generate_master_key(rotation.new_key)
    rotation.write_config(rotation.new_key, [rotation.old_key])
    intake = rotation.open(rotation.new_key, [rotation.old_key])
    messages = deposit_many(intake, 1)
    open_sessions(daemon, messages)

    assert_all_readable(daemon, messages)

    for store in (daemon, intake):
        store.close()
    audit.close()


def test_reloader_reports_invalid_configuration(rotation: Rotation) -> None:
    config = rotation.write_config(rotation.old_key)
    daemon = rotation.open(rotation.old_key, key_loader=KeyFileReloader(str(config)))
    generate_master_key(rotation.new_key)
    intake = rotation.open(rotation.new_key, [rotation.old_key])
    (message,) = deposit_many(intake, 1)
    open_sessions(intake, [message])
    config.write_text("portal: [not, a, mapping]\n")

    with pytest.raises(PortalKeyError, match="cannot read the master key files again"):
        daemon.read_message(message.token, message.session)
    # Within KEY_RELOAD_INTERVAL the files are not read again.
    rotation.write_config(rotation.new_key, [rotation.old_key])
    with pytest.raises(PortalKeyError, match="neither portal.key_file nor"):
        daemon.read_message(message.token, message.session)
    for store in (daemon, intake):
        store.close()


# -- keys the store was rotated away from ------------------------------------------


def rotate(rotation: Rotation, key_file: Path, previous: Sequence[Path], name: str) -> None:
    """Run a whole ``rekey`` from ``previous`` to ``key_file``."""
    config = rotation.write_config(key_file, previous, name=name)
    assert main(rekey_command(config)) == 0


def test_swapped_key_files_refused_by_rekey(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """key_file = the old key, previous_key_files = [the new key] has the rotated key
    in its keyring, but would move every data key back to the old key."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 3)
    store.close()
    generate_master_key(rotation.new_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "new.yaml")
    overrides_before = len(rotation.audit_records())
    capsys.readouterr()
    swapped = rotation.write_config(rotation.old_key, [rotation.new_key], name="swapped.yaml")

    assert main(rekey_command(swapped)) == 1

    error = capsys.readouterr().err
    old_id = master_key_id(load_master_key(rotation.old_key))
    new_id = master_key_id(load_master_key(rotation.new_key))
    assert f"master key id {old_id}" in error
    assert "point portal.key_file at the newest key" in error
    assert f"key id {new_id}" in error
    assert "nothing was changed" in error
    assert set(rotation.key_ids_in_database().values()) == {new_id}
    assert len(rotation.audit_records()) == overrides_before

    assert main(["portal", "status", "-c", str(swapped)]) == 0
    status = capsys.readouterr().out
    assert f"master key id {old_id}, which a rotation retired" in status
    assert "Run 'postveil portal rekey'" not in status


def test_swapped_key_files_refused_for_deposits(rotation: Rotation) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "new.yaml")
    swapped = rotation.open(rotation.old_key, [rotation.new_key])

    with pytest.raises(PortalKeyError) as refused:
        deposit_many(swapped, 1)
    swapped.close()

    old_id = master_key_id(load_master_key(rotation.old_key))
    assert f"master key id {old_id}" in str(refused.value)
    assert "point portal.key_file at the newest key" in str(refused.value)
    assert len(rotation.key_ids_in_database()) == 2
    files = list((rotation.store_directory / "messages").iterdir())
    assert len(files) == 2


def test_intake_with_swapped_key_files_defers(
    rotation: Rotation, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    seal = PortalSeal.load(rotation.tmp / "keys" / "seal.key")
    store = rotation.open(rotation.old_key)
    deposit_many(store, 1)
    store.close()
    generate_master_key(rotation.new_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "new.yaml")
    swapped_path = rotation.write_config(rotation.old_key, [rotation.new_key], name="swapped.yaml")
    old_id = master_key_id(load_master_key(rotation.old_key))

    process = run_deliver(swapped_path, portal_copy(seal, "stored under the swapped keys"))

    assert process.returncode == 75, process.stderr
    assert process.stderr.startswith(b"4.")
    assert f"master key id {old_id}".encode() in process.stderr
    assert b"point portal.key_file at the newest key" in process.stderr

    swapped = parse_config(swapped_path.read_bytes(), str(swapped_path))
    intake = Intake(swapped)
    try:
        with caplog.at_level(logging.INFO, logger="postveil.portal.intake"):
            result = intake.deliver(
                io.BytesIO(portal_copy(seal, "in process")), sender=SENDER, queue_id="4QrekeyQ2"
            )
    finally:
        intake.audit.close()
    assert result.status == 75
    (line,) = [r.getMessage() for r in caplog.records if r.name == "postveil.portal.intake"]
    assert line.startswith("4QrekeyQ2: deferred: ")
    assert f"master key id {old_id}" in line
    assert "point portal.key_file at the newest key" in line
    assert len(rotation.key_ids_in_database()) == 1
    assert sink.messages == []


def test_daemon_refuses_retired_key_file(rotation: Rotation) -> None:
    store = rotation.open(rotation.old_key)
    store.close()
    generate_master_key(rotation.new_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "new.yaml")
    swapped_path = rotation.write_config(rotation.old_key, [rotation.new_key], name="swapped.yaml")
    swapped = parse_config(swapped_path.read_bytes(), str(swapped_path))

    with pytest.raises(PortalKeyError) as refused:
        open_resources(swapped)

    old_id = master_key_id(load_master_key(rotation.old_key))
    assert f"master key id {old_id}" in str(refused.value)
    assert "point portal.key_file at the newest key" in str(refused.value)


def test_key_retired_when_rekey_starts(rotation: Rotation) -> None:
    """An interrupted rekey has already retired the old key, and a rerun with the
    same configuration finishes the job."""
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 12)
    open_sessions(store, messages)
    store.close()
    generate_master_key(rotation.new_key)
    rekey = rotation.open(rotation.new_key, [rotation.old_key])

    def stop(total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rewrap_all(rekey, batch_size=5, after_batch=stop)
    swapped = rotation.open(rotation.old_key, [rotation.new_key])
    with pytest.raises(PortalKeyError, match="point portal.key_file at the newest key"):
        deposit_many(swapped, 1)
    swapped.close()

    assert rewrap_all(rekey).rewrapped == 7
    rekey.close()
    new_id = master_key_id(load_master_key(rotation.new_key))
    assert set(rotation.key_ids_in_database().values()) == {new_id}


def test_second_rotation_retires_both_older_keys(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 2)
    open_sessions(store, messages)
    store.close()
    generate_master_key(rotation.new_key)
    newest_key = rotation.tmp / "keys" / "portal-newest.key"
    generate_master_key(newest_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "first.yaml")
    rotate(rotation, newest_key, [rotation.new_key], "second.yaml")
    capsys.readouterr()

    for key_file, previous in [
        (rotation.new_key, [newest_key, rotation.old_key]),
        (rotation.old_key, [newest_key]),
    ]:
        config = rotation.write_config(key_file, previous, name="back.yaml")
        assert main(rekey_command(config)) == 1
        key_id = master_key_id(load_master_key(key_file))
        assert f"master key id {key_id}" in capsys.readouterr().err

    newest_id = master_key_id(load_master_key(newest_key))
    assert set(rotation.key_ids_in_database().values()) == {newest_id}
    # A retired key may still be read as a previous key.
    reader = rotation.open(newest_key, [rotation.new_key, rotation.old_key])
    assert_all_readable(reader, messages)
    deposit_many(reader, 1)
    reader.close()


def test_rerun_records_keys_of_older_rotation(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that a postveil without retired keys rotated: a rerun of rekey with
    nothing to encrypt again records the old key as retired."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    assert main(rekey_command(config)) == 0
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert f"retired master key id(s) {old_id}" in capsys.readouterr().out
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute("DELETE FROM meta WHERE name LIKE 'retired%'")
    swapped = rotation.write_config(rotation.old_key, [rotation.new_key], name="swapped.yaml")

    assert main(rekey_command(config)) == 0

    output = capsys.readouterr().out
    assert f"retired master key id(s) {old_id}" in output
    assert "nothing to do" in output
    assert main(rekey_command(swapped)) == 1
    assert "point portal.key_file at the newest key" in capsys.readouterr().err
    assert len([r for r in rotation.audit_records() if r["kind"] == "admin_override"]) == 1


# -- abandoning a rotation ---------------------------------------------------------


def record_rotation(rotation: Rotation, key_file: Path, previous: Sequence[Path]) -> None:
    """Leave the store as a rekey that stopped right after recording ``key_file``."""
    store = rotation.open(key_file, previous)
    store.declare_current_key()
    store.close()


def abandon_overrides(rotation: Rotation) -> list[dict[str, Any]]:
    return [
        record
        for record in rotation.audit_records()
        if record["kind"] == "admin_override" and record["action"] == "portal-rekey-abandon"
    ]


def test_abandon_after_new_key_lost(rotation: Rotation, capsys: pytest.CaptureFixture[str]) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 3)
    open_sessions(store, messages)
    store.close()
    generate_master_key(rotation.new_key)
    new_id = master_key_id(load_master_key(rotation.new_key))
    old_id = master_key_id(load_master_key(rotation.old_key))
    record_rotation(rotation, rotation.new_key, [rotation.old_key])
    rotation.new_key.unlink()
    old_config = rotation.write_config(rotation.old_key)

    # Stuck: the intake defers and rekey refuses, and both name the way out.
    stuck = rotation.open(rotation.old_key)
    with pytest.raises(PortalKeyError) as refused:
        deposit_many(stuck, 1)
    stuck.close()
    assert "postveil portal rekey --abandon" in str(refused.value)
    assert main(rekey_command(old_config)) == 1
    assert "postveil portal rekey --abandon" in capsys.readouterr().err

    assert main(rekey_command(old_config, "--abandon", "--reason", "new key lost")) == 0

    output = capsys.readouterr().out
    assert f"abandoned the rotation to master key id {new_id}" in output
    assert f"master key id {old_id} is no longer retired" in output
    (override,) = abandon_overrides(rotation)
    assert override["target"] == str(rotation.store_directory)
    assert override["fingerprint"] == new_id
    assert override["reason"] == "new key lost"
    assert override["command"] == f"postveil portal rekey --abandon -c {old_config}"
    store = rotation.open(rotation.old_key)
    assert store.rotated_key_id() is None
    assert store.retired_key_ids() == {}
    messages += deposit_many(store, 1, first=10)
    open_sessions(store, messages[-1:])
    assert_all_readable(store, messages)
    store.close()
    config = parse_config(old_config.read_bytes(), str(old_config))
    daemon, audit, _context = open_resources(config)
    daemon.close()
    audit.close()


def test_abandon_refused_with_messages_under_key(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 3)
    store.close()
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])
    assert main(rekey_command(config)) == 0
    old_config = rotation.write_config(rotation.old_key, [rotation.new_key], name="old.yaml")
    capsys.readouterr()

    assert main(rekey_command(old_config, "--abandon")) == 1

    error = capsys.readouterr().err
    new_id = master_key_id(load_master_key(rotation.new_key))
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert f"3 stored message(s) are under master key id {new_id}" in error
    assert "nothing was changed" in error
    assert abandon_overrides(rotation) == []
    store = rotation.open(rotation.new_key, [rotation.old_key])
    assert store.rotated_key_id() == new_id
    assert store.retired_key_ids() == {old_id: new_id}
    store.close()


def test_abandon_second_rotation_restores_first(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 2)
    open_sessions(store, messages)
    store.close()
    generate_master_key(rotation.new_key)
    rotate(rotation, rotation.new_key, [rotation.old_key], "first.yaml")
    newest_key = rotation.tmp / "keys" / "portal-newest.key"
    generate_master_key(newest_key)
    record_rotation(rotation, newest_key, [rotation.new_key, rotation.old_key])
    newest_key.unlink()
    config = rotation.write_config(rotation.new_key, [rotation.old_key], name="first.yaml")
    capsys.readouterr()

    assert main(rekey_command(config, "--abandon")) == 0

    output = capsys.readouterr().out
    new_id = master_key_id(load_master_key(rotation.new_key))
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert f"the store is back at master key id {new_id}" in output
    store = rotation.open(rotation.new_key, [rotation.old_key])
    assert store.rotated_key_id() == new_id
    assert store.retired_key_ids() == {old_id: new_id}
    deposit_many(store, 1)
    assert_all_readable(store, messages)
    store.close()
    stale = rotation.open(rotation.old_key, [rotation.new_key])
    with pytest.raises(PortalKeyError, match="point portal.key_file at the newest key"):
        deposit_many(stale, 1)
    stale.close()


def test_abandon_refused_with_rotated_key_configured(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second --abandon with the configuration that the first one needed would give
    up the rotation to the key that this configuration still uses."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 1)
    store.close()
    old, first, second = record_chain(rotation, 2)
    config = rotation.write_config(first, [old], name="first.yaml")
    assert main(rekey_command(config, "--abandon")) == 0
    capsys.readouterr()

    assert main(rekey_command(config, "--abandon")) == 1

    error = capsys.readouterr().err
    assert f"the store's last rotation is to master key id {key_id_of(first)}" in error
    assert f"which portal.key_file in {config} names" in error
    assert "nothing was changed" in error
    assert len(abandon_overrides(rotation)) == 1
    store = rotation.open(first, [old])
    assert store.rotated_key_id() == key_id_of(first)
    assert store.retired_key_ids() == {key_id_of(old): key_id_of(first)}
    store.close()


def record_chain(rotation: Rotation, count: int) -> list[Path]:
    """Record ``count`` rotations after the old key, each to a new key file, with
    nothing encrypted again. Returns the key files, oldest first."""
    keys = [rotation.old_key]
    for number in range(count):
        key_file = rotation.tmp / "keys" / f"portal-{number}.key"
        generate_master_key(key_file)
        record_rotation(rotation, key_file, keys[::-1])
        keys.append(key_file)
    return keys


def key_id_of(key_file: Path) -> str:
    return master_key_id(load_master_key(key_file))


def test_abandon_goes_back_several_rotations(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 2)
    open_sessions(store, messages)
    store.close()
    old, first, second, third = record_chain(rotation, 3)
    capsys.readouterr()

    for abandoned, back in [(third, second), (second, first)]:
        config = rotation.write_config(back, [old], name="back.yaml")
        assert main(rekey_command(config, "--abandon")) == 0
        output = capsys.readouterr().out
        assert f"abandoned the rotation to master key id {key_id_of(abandoned)}" in output
        assert f"the store is back at master key id {key_id_of(back)}" in output

    store = rotation.open(first, [old])
    assert store.rotated_key_id() == key_id_of(first)
    assert store.retired_key_ids() == {key_id_of(old): key_id_of(first)}
    deposit_many(store, 1, first=10)
    assert_all_readable(store, messages)
    store.close()
    stale = rotation.open(old, [first])
    with pytest.raises(PortalKeyError, match="point portal.key_file at the newest key"):
        deposit_many(stale, 1, first=20)
    stale.close()
    assert len(abandon_overrides(rotation)) == 2


def test_abandon_back_to_first_key(rotation: Rotation, capsys: pytest.CaptureFixture[str]) -> None:
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, 1)
    open_sessions(store, messages)
    store.close()
    old, first, second = record_chain(rotation, 2)
    config = rotation.write_config(first, [old], name="first.yaml")
    assert main(rekey_command(config, "--abandon")) == 0
    config = rotation.write_config(old, name="old.yaml")
    capsys.readouterr()

    assert main(rekey_command(config, "--abandon")) == 0

    output = capsys.readouterr().out
    assert f"abandoned the rotation to master key id {key_id_of(first)}" in output
    assert "no rotation is recorded in the store any more" in output
    assert main(rekey_command(config, "--abandon")) == 0
    assert "no rotation is recorded in the store; nothing to do" in capsys.readouterr().out
    store = rotation.open(old)
    assert store.rotated_key_id() is None
    assert store.retired_key_ids() == {}
    deposit_many(store, 1, first=10)
    assert_all_readable(store, messages)
    store.close()


def test_abandon_refused_under_abandoned_key(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """An intake that kept the key of an abandoned rotation stored a message under it,
    so the rotation that the store went back to cannot be abandoned too."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 1)
    store.close()
    old, first, second = record_chain(rotation, 2)
    config = rotation.write_config(first, [old], name="first.yaml")
    assert main(rekey_command(config, "--abandon")) == 0
    still_second = rotation.open(second, [first, old])
    deposit_many(still_second, 1, first=10)
    still_second.close()
    config = rotation.write_config(old, name="old.yaml")
    capsys.readouterr()

    assert main(rekey_command(config, "--abandon")) == 1

    error = capsys.readouterr().err
    assert (
        f"1 stored message(s) are under master key id {key_id_of(first)} or under key id(s) "
        f"{key_id_of(second)}, whose rotations were abandoned back to key id {key_id_of(first)},"
    ) in error
    assert "nothing was changed" in error
    assert len(abandon_overrides(rotation)) == 1
    store = rotation.open(first, [old])
    assert store.rotated_key_id() == key_id_of(first)
    store.close()


def test_abandon_reads_legacy_record(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store rotated by a postveil that kept only the key id before the last rotation,
    in the row rotated_from_key_id."""
    store = rotation.open(rotation.old_key)
    deposit_many(store, 1)
    store.close()
    old, first, second = record_chain(rotation, 2)
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute("DELETE FROM meta WHERE name LIKE 'rotated_from:%'")
        database.execute(
            "INSERT INTO meta (name, value) VALUES ('rotated_from_key_id', ?)", (key_id_of(first),)
        )
    config = rotation.write_config(first, [old], name="first.yaml")
    capsys.readouterr()

    assert main(rekey_command(config, "--abandon")) == 0

    assert f"the store is back at master key id {key_id_of(first)}" in capsys.readouterr().out
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        names = [name for (name,) in database.execute("SELECT name FROM meta")]
    assert "rotated_from_key_id" not in names


def test_abandon_without_rotation_changes_nothing(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 1)
    store.close()
    config = rotation.write_config(rotation.old_key)

    assert main(rekey_command(config, "--abandon")) == 0

    assert "no rotation is recorded in the store; nothing to do" in capsys.readouterr().out
    assert rotation.audit_records() == []


def test_abandon_refused_for_unlabelled_row(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row without a key id that no configured key opens may be under the key
    being abandoned."""
    store = rotation.open(rotation.old_key)
    damaged, _intact = deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    record_rotation(rotation, rotation.new_key, [rotation.old_key])
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute(
            "UPDATE messages SET key_id = NULL, wrapped_key = zeroblob(60) WHERE id = ?",
            (damaged.message_id,),
        )
    config = rotation.write_config(rotation.old_key)

    assert main(rekey_command(config, "--abandon")) == 1

    error = capsys.readouterr().err
    assert "1 stored message(s)" in error
    assert "revoke" in error
    assert abandon_overrides(rotation) == []


# -- schema migration --------------------------------------------------------------

_VERSION_1_COLUMNS = ["id", "created", "expires", "sender", "queue_id", "size", "wrapped_key"]


def make_version_1_store(rotation: Rotation, count: int) -> list[Stored]:
    """Build a store as postveil with schema version 1 left it: the rows and files are
    written by the store code, then the key_id column, which version 1 did not have,
    is dropped and the version set back to 1."""
    store = rotation.open(rotation.old_key)
    messages = deposit_many(store, count)
    open_sessions(store, messages)
    store.close()
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute("ALTER TABLE messages DROP COLUMN key_id")
        database.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
        columns = [row[1] for row in database.execute("PRAGMA table_info(messages)")]
    assert columns == _VERSION_1_COLUMNS
    return messages


def schema_version(rotation: Rotation) -> str:
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        (version,) = database.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
    return str(version)


def test_migration_labels_rows_with_current_key(rotation: Rotation) -> None:
    messages = make_version_1_store(rotation, 4)

    store = rotation.open(rotation.old_key)

    assert schema_version(rotation) == "2"
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert set(rotation.key_ids_in_database().values()) == {old_id}
    assert_all_readable(store, messages)
    store.close()


def test_migration_after_key_change_labels_old_key(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    """An administrator who upgrades and rotates at once: the rows get the id of the
    key that opens them, not that of portal.key_file."""
    messages = make_version_1_store(rotation, 2)
    generate_master_key(rotation.new_key)
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute(
            "UPDATE messages SET wrapped_key = zeroblob(60) WHERE id = ?",
            (messages[1].message_id,),
        )
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(["portal", "status", "-c", str(config)]) == 0

    old_id = master_key_id(load_master_key(rotation.old_key))
    new_id = master_key_id(load_master_key(rotation.new_key))
    assert rotation.key_ids_in_database() == {
        messages[0].message_id: old_id,
        messages[1].message_id: None,
    }
    out = capsys.readouterr().out
    assert key_table(out) == {new_id: 0, old_id: 1, "(none)": 1}


def test_status_names_a_key_id_without_a_file(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    store = rotation.open(rotation.old_key)
    deposit_many(store, 2)
    store.close()
    generate_master_key(rotation.new_key)
    # The old key file is missing from previous_key_files.
    config = rotation.write_config(rotation.new_key)

    assert main(["portal", "status", "-c", str(config)]) == 0

    out = capsys.readouterr().out
    old_id = master_key_id(load_master_key(rotation.old_key))
    assert key_table(out)[old_id] == 2
    assert f"No configured key file opens the messages under key id {old_id}" in out
    assert "portal rekey" not in out


def test_newer_schema_is_a_clear_error(rotation: Rotation) -> None:
    store = rotation.open(rotation.old_key)
    store.close()
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute("UPDATE meta SET value = '3' WHERE name = 'schema'")

    with pytest.raises(PortalError, match="schema version 3, which a newer postveil wrote"):
        rotation.open(rotation.old_key)

    assert schema_version(rotation) == "3"


def test_invalid_schema_is_a_clear_error(rotation: Rotation) -> None:
    store = rotation.open(rotation.old_key)
    store.close()
    with sqlite3.connect(rotation.store_directory / "portal.sqlite3") as database:
        database.execute("UPDATE meta SET value = 'two' WHERE name = 'schema'")

    with pytest.raises(PortalError, match="invalid schema version 'two'"):
        rotation.open(rotation.old_key)


def test_rekey_without_store_creates_nothing(
    rotation: Rotation, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_master_key(rotation.new_key)
    config = rotation.write_config(rotation.new_key, [rotation.old_key])

    assert main(rekey_command(config)) == 1

    assert f"portal.store_directory {rotation.store_directory} does not exist" in (
        capsys.readouterr().err
    )
    assert not rotation.store_directory.exists()
    assert rotation.audit_records() == []
