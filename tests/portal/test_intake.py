"""``postveil portal deliver`` without Postfix: the seal check, header parsing, the size
limit, withdrawal on failure and the audit records, with an aiosmtpd sink on
127.0.0.1 as the notification relay."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postveil.audit import generate_key_file
from postveil.cli import portal_cmd
from postveil.cli.main import main
from postveil.config import Config
from postveil.harness.net import free_port
from postveil.harness.smtp import SmtpSink
from postveil.portal import mailer
from postveil.portal.intake import (
    EX_DATAERR,
    EX_NOPERM,
    EX_OK,
    EX_TEMPFAIL,
    Intake,
    IntakeDeferred,
    IntakeResult,
    split_portal_copy,
)
from postveil.portal.seal import SEAL_HEADER, PortalSeal
from postveil.portal.store import PortalStore, generate_master_key

HEADER = "X-Postveil-Portal-Recipient"
SENDER = "doctor@clinic.test"
RECIPIENTS = ("pat@example.net", "kim@example.org")
SECRET_LINE = "Lab result for Jane Roe: potassium 6.1 mmol/L"
BASE_URL = "https://portal.test"
LINK_RE = re.compile(re.escape(BASE_URL) + r"/m/([A-Za-z0-9_-]+)")


@dataclass
class Setup:
    tmp: Path
    sink: SmtpSink
    seal: PortalSeal
    settings: dict[str, Any]

    def config(self, **portal: Any) -> Config:
        data = json.loads(json.dumps(self.settings))
        data["portal"].update(portal)
        return Config.model_validate(data)

    def intake(self, **portal: Any) -> Intake:
        return Intake(self.config(**portal))

    def store(self) -> PortalStore:
        return PortalStore.open(
            self.settings["portal"]["store_directory"], self.settings["portal"]["key_file"]
        )

    def deliver(self, raw: bytes, **portal: Any) -> IntakeResult:
        intake = self.intake(**portal)
        try:
            return intake.deliver(io.BytesIO(raw), sender=SENDER, queue_id="4QtestQ1")
        finally:
            intake.audit.close()

    def audit_records(self) -> list[dict[str, Any]]:
        path = Path(self.settings["audit"]["directory"]) / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def audit_text(self) -> str:
        directory = Path(self.settings["audit"]["directory"])
        return "".join(p.read_text() for p in directory.iterdir() if p.is_file())

    def stored_count(self) -> int:
        store = self.store()
        try:
            return store.counts()["messages"]
        finally:
            store.close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.1", tls="none", port=0, hostname="relay.test") as server:
        yield server


@pytest.fixture
def setup(tmp_path: Path, sink: SmtpSink) -> Setup:
    keys = tmp_path / "keys"
    keys.mkdir()
    generate_key_file(keys / "audit.key")
    generate_master_key(keys / "portal.key")
    generate_master_key(keys / "seal.key", 0o640)
    settings = {
        "portal": {
            "intake_address": "intake@portal.test",
            "seal_key_file": str(keys / "seal.key"),
            "key_file": str(keys / "portal.key"),
            "store_directory": str(tmp_path / "store"),
            "base_url": BASE_URL,
            "notify_relay": f"127.0.0.1:{sink.port}",
            "organisation": "Clinic",
        },
        "audit": {"directory": str(tmp_path / "audit"), "key_file": str(keys / "audit.key")},
    }
    return Setup(tmp_path, sink, PortalSeal.load(keys / "seal.key"), settings)


def portal_copy(
    recipients: tuple[str, ...] = RECIPIENTS,
    *,
    seal: str | None = None,
    eol: str = "\r\n",
    body: str = SECRET_LINE,
) -> bytes:
    lines = [
        f"From: <{SENDER}>",
        "To: " + ", ".join(RECIPIENTS),
        "Subject: Results",
        "Message-ID: <intake-test@clinic.test>",
        *(f"{HEADER}: {recipient}" for recipient in recipients),
    ]
    if seal is not None:
        lines.append(f"{SEAL_HEADER}: {seal}")
    return (eol.join([*lines, "", body, ""])).encode()


def expected_stored(body: str = SECRET_LINE) -> bytes:
    lines = [
        f"From: <{SENDER}>",
        "To: " + ", ".join(RECIPIENTS),
        "Subject: Results",
        "Message-ID: <intake-test@clinic.test>",
    ]
    return "\r\n".join([*lines, "", body, ""]).encode()


def open_with_code(store: PortalStore, token: str) -> bytes | None:
    issued = store.issue_code(token, lifetime=600, per_hour=5)
    assert issued.code is not None
    checked = store.check_code(token, issued.code, attempts=5, session_lifetime=900)
    assert checked.session is not None
    return store.read_message(token, checked.session)


# -- accepted ----------------------------------------------------------------------


def test_sealed_copy_stored_and_notified(setup: Setup) -> None:
    raw = portal_copy(seal=setup.seal.make(RECIPIENTS), eol="\n")

    result = setup.deliver(raw)

    assert result.status == EX_OK, result.line
    assert result.line.startswith("stored as portal message ")
    notices = setup.sink.wait_for(2, timeout=10)
    assert [n.rcpt_tos for n in notices] == [(RECIPIENTS[0],), (RECIPIENTS[1],)]
    store = setup.store()
    try:
        for notice in notices:
            parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
            text = parsed.get_content()
            assert SENDER in text
            assert SECRET_LINE not in notice.data.decode()
            links = LINK_RE.findall(text)
            assert len(links) == 1
            pickup = store.pickup(links[0])
            assert pickup is not None
            assert pickup.recipient == notice.rcpt_tos[0]
            assert pickup.sender == SENDER
            assert open_with_code(store, links[0]) == expected_stored()
    finally:
        store.close()


def test_audit_records_without_text(setup: Setup) -> None:
    result = setup.deliver(portal_copy(seal=setup.seal.make(RECIPIENTS)))
    assert result.status == EX_OK, result.line

    records = setup.audit_records()
    events = [(r["event"], r["recipient"]) for r in records]
    message_ids = {r["message"] for r in records}

    assert events == [
        ("stored", RECIPIENTS[0]),
        ("stored", RECIPIENTS[1]),
        ("notified", RECIPIENTS[0]),
        ("notified", RECIPIENTS[1]),
    ]
    assert len(message_ids) == 1
    assert message_ids.pop() in result.line
    assert {r["queue_id"] for r in records} == {"4QtestQ1"}
    assert {r["program"] for r in records} == {"postveil portal deliver"}
    audit_text = setup.audit_text()
    assert "Jane Roe" not in audit_text
    assert "potassium" not in audit_text
    assert "Results" not in audit_text
    assert BASE_URL not in audit_text


@pytest.mark.parametrize(
    "name, raw_factory",
    [
        ("lf", lambda s: portal_copy(seal=s.make(RECIPIENTS), eol="\n")),
        ("crlf", lambda s: portal_copy(seal=s.make(RECIPIENTS), eol="\r\n")),
        (
            "folded",
            lambda s: (
                portal_copy(seal=None)
                .replace(
                    f"{HEADER}: {RECIPIENTS[0]}".encode(),
                    f"{HEADER}:\r\n\t{RECIPIENTS[0]}".encode(),
                )
                .replace(
                    b"\r\n\r\n",
                    f"\r\n{SEAL_HEADER}: v1\r\n {s.make(RECIPIENTS)[3:]}\r\n\r\n".encode(),
                    1,
                )
            ),
        ),
        (
            "lower-case names",
            lambda s: (
                portal_copy(seal=s.make(RECIPIENTS))
                .replace(HEADER.encode(), HEADER.lower().encode())
                .replace(SEAL_HEADER.encode(), SEAL_HEADER.upper().encode())
            ),
        ),
    ],
)
def test_header_forms_accepted(setup: Setup, name: str, raw_factory: Any) -> None:
    raw = raw_factory(setup.seal)

    result = setup.deliver(raw)

    assert result.status == EX_OK, f"{name}: {result.line}"
    assert setup.stored_count() == 1
    notices = setup.sink.wait_for(2, timeout=10)
    token = LINK_RE.findall(notices[0].data.decode())[0]
    store = setup.store()
    try:
        assert open_with_code(store, token) == expected_stored()
    finally:
        store.close()


def test_split_keeps_body_bytes() -> None:
    body = "line one\n\nX-Postveil-Portal-Recipient: in the body\nend"
    raw = portal_copy(seal="v1 t=1 m=" + "0" * 64, eol="\n", body=body)

    copy = split_portal_copy(raw, HEADER)

    assert copy.recipients == RECIPIENTS
    assert copy.seals == ("v1 t=1 m=" + "0" * 64,)
    assert copy.stored == expected_stored(body.replace("\n", "\r\n"))


# -- refused -----------------------------------------------------------------------


def _forged_seal(seal: PortalSeal) -> str:
    return seal.make(("someone@else.example",))


REFUSALS = [
    ("missing seal", lambda s: portal_copy(seal=None), "no seal header"),
    ("malformed seal", lambda s: portal_copy(seal="v1 t=abc m=00"), "malformed seal header"),
    ("forged recipients", lambda s: portal_copy(seal=_forged_seal(s)), "does not match"),
    (
        "reordered recipients",
        lambda s: portal_copy(seal=s.make(RECIPIENTS[::-1])),
        "does not match",
    ),
    (
        "other key",
        lambda s: portal_copy(seal=PortalSeal(b"k" * 32).make(RECIPIENTS)),
        "does not match",
    ),
    (
        "old seal",
        lambda s: portal_copy(seal=s.make(RECIPIENTS, now=time.time() - 8 * 86400)),
        "older than portal.seal_max_age",
    ),
    (
        "future seal",
        lambda s: portal_copy(seal=s.make(RECIPIENTS, now=time.time() + 3600)),
        "dated in the future",
    ),
    (
        "two seals",
        lambda s: portal_copy(seal=s.make(RECIPIENTS)).replace(
            b"\r\n\r\n", f"\r\n{SEAL_HEADER}: {s.make(RECIPIENTS)}\r\n\r\n".encode(), 1
        ),
        "2 seal headers",
    ),
    ("no recipient headers", lambda s: portal_copy((), seal=s.make(())), "no recipient headers"),
    ("empty input", lambda s: b"", "no recipient headers"),
]


@pytest.mark.parametrize("name, raw_factory, reason", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_unsealed_copy_refused(setup: Setup, name: str, raw_factory: Any, reason: str) -> None:
    result = setup.deliver(raw_factory(setup.seal))

    assert result.status == EX_NOPERM
    assert result.line.startswith("5.7.1 ")
    assert reason in result.line
    assert "\n" not in result.line
    assert SECRET_LINE not in result.line
    assert setup.stored_count() == 0
    time.sleep(0.2)
    assert setup.sink.messages == []
    records = setup.audit_records()
    assert [(r["event"], r["message"], r["recipient"]) for r in records] == [("refused", "", "")]
    assert reason in records[0]["reason"]


def test_size_limit(setup: Setup) -> None:
    raw = portal_copy(seal=setup.seal.make(RECIPIENTS))

    too_large = setup.deliver(raw, max_message_size=len(raw) - 1)
    at_limit = setup.deliver(raw, max_message_size=len(raw))

    assert too_large.status == EX_DATAERR
    assert too_large.line.startswith("5.3.4 ")
    assert f"({len(raw) - 1} bytes)" in too_large.line
    assert at_limit.status == EX_OK, at_limit.line
    assert setup.stored_count() == 1


def test_size_limit_reads_at_most_limit_plus_one(setup: Setup) -> None:
    class CountingReader(io.BytesIO):
        requested: list[int] = []

        def read(self, size: int | None = -1) -> bytes:
            self.requested.append(-1 if size is None else size)
            return super().read(size)

    source = CountingReader(b"x" * 5000)
    intake = setup.intake(max_message_size=1000)
    try:
        result = intake.deliver(source, sender=SENDER)
    finally:
        intake.audit.close()

    assert result.status == EX_DATAERR
    assert source.requested == [1001]


# -- deferred ----------------------------------------------------------------------


def test_relay_down_withdraws(setup: Setup) -> None:
    closed = free_port("127.0.0.1")

    result = setup.deliver(
        portal_copy(seal=setup.seal.make(RECIPIENTS)), notify_relay=f"127.0.0.1:{closed}"
    )

    assert result.status == EX_TEMPFAIL
    assert result.line.startswith("4.3.0 ")
    assert f"127.0.0.1:{closed}" in result.line
    assert setup.stored_count() == 0
    messages = Path(setup.settings["portal"]["store_directory"]) / "messages"
    assert list(messages.iterdir()) == []


def test_relay_rejecting_data_withdraws(setup: Setup) -> None:
    setup.sink.reply = "451 4.3.0 try later"

    result = setup.deliver(portal_copy(seal=setup.seal.make(RECIPIENTS)))

    assert result.status == EX_TEMPFAIL
    assert setup.stored_count() == 0
    events = [(r["event"], r["recipient"]) for r in setup.audit_records()]
    assert events == [
        ("stored", RECIPIENTS[0]),
        ("stored", RECIPIENTS[1]),
        ("withdrawn", RECIPIENTS[0]),
        ("withdrawn", RECIPIENTS[1]),
    ]
    assert "4.3.0 try later" in setup.audit_records()[-1]["reason"]


def test_audit_unwritable_withdraws(setup: Setup) -> None:
    blocker = setup.tmp / "not-a-directory"
    blocker.write_text("")
    setup.settings["audit"]["directory"] = str(blocker / "audit")

    result = setup.deliver(portal_copy(seal=setup.seal.make(RECIPIENTS)))

    assert result.status == EX_TEMPFAIL
    assert "audit" in result.line
    assert setup.stored_count() == 0
    assert setup.sink.messages == []


def test_refusal_unrecorded_defers(setup: Setup) -> None:
    blocker = setup.tmp / "not-a-directory"
    blocker.write_text("")
    setup.settings["audit"]["directory"] = str(blocker / "audit")

    result = setup.deliver(portal_copy(seal=None))

    assert result.status == EX_TEMPFAIL
    assert "rejected message" in result.line


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"base_url": None}, "portal.base_url is not set"),
        ({"seal_key_file": None}, "portal.seal_key_file is not set"),
        ({"seal_key_file": "/nonexistent/seal.key"}, "cannot read portal seal key"),
    ],
)
def test_missing_setting_defers(setup: Setup, change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(IntakeDeferred) as raised:
        setup.intake(**change)

    assert fragment in raised.value.reason
    assert raised.value.dsn == "4.3.5"


def test_store_key_missing_defers(setup: Setup) -> None:
    result = setup.deliver(
        portal_copy(seal=setup.seal.make(RECIPIENTS)), key_file=str(setup.tmp / "missing.key")
    )

    assert result.status == EX_TEMPFAIL
    assert "postveil portal init" in result.line
    assert setup.sink.messages == []


# -- the command -------------------------------------------------------------------


def run_deliver(config: Path, raw: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    return subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "portal", "deliver", "-c", str(config), *args],
        input=raw,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


def write_config(setup: Setup) -> Path:
    path = setup.tmp / "postveil.yaml"
    path.write_text(json.dumps(setup.settings))
    return path


def test_command_exit_codes(setup: Setup) -> None:
    config = write_config(setup)
    sealed = portal_copy(seal=setup.seal.make(RECIPIENTS), eol="\n")

    accepted = run_deliver(config, sealed, "--queue-id", "4QcmdQ1", "--sender", SENDER)
    refused = run_deliver(config, portal_copy(seal=None), "--sender", SENDER)
    no_sender = run_deliver(config, sealed)
    bad_option = run_deliver(config, sealed, "--sender", SENDER, "--recipient", "x")
    no_config = run_deliver(setup.tmp / "missing.yaml", sealed, "--sender", SENDER)

    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stderr == b""
    assert accepted.stdout.startswith(b"stored as portal message ")
    assert refused.returncode == 77
    assert refused.stdout == b""
    assert refused.stderr.startswith(b"5.7.1 ")
    assert refused.stderr.count(b"\n") == 1
    for deferred_run in (no_sender, bad_option, no_config):
        assert deferred_run.returncode == 75, deferred_run.stderr
        assert deferred_run.stderr.startswith(b"4.3.5 ")
        assert deferred_run.stderr.count(b"\n") == 1
    assert b"--sender" in no_sender.stderr
    assert b"missing.yaml" in no_config.stderr


def test_init_status_purge(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    keys = setup.tmp / "new-keys"
    keys.mkdir()
    setup.settings["portal"].update(
        store_directory=str(setup.tmp / "new-store"),
        key_file=str(keys / "portal.key"),
        seal_key_file=str(keys / "seal.key"),
    )
    config = str(write_config(setup))

    first = main(["portal", "init", "-c", config])
    first_out = capsys.readouterr().out
    second = main(["portal", "init", "-c", config])
    second_out = capsys.readouterr().out

    assert first == 0
    assert first_out.count("created ") == 3
    assert (os.stat(setup.tmp / "new-store").st_mode & 0o777) == 0o700
    assert (os.stat(keys / "portal.key").st_mode & 0o777) == 0o600
    assert (os.stat(keys / "seal.key").st_mode & 0o777) == 0o640
    assert "chown" in first_out
    assert second == 0
    assert "created" not in second_out
    assert second_out.count("exists, left unchanged") == 3

    seal = PortalSeal.load(keys / "seal.key")
    assert setup.deliver(portal_copy(seal=seal.make(RECIPIENTS))).status == EX_OK
    assert main(["portal", "status", "-c", config]) == 0
    status_out = capsys.readouterr().out
    assert "messages waiting: 1" in status_out
    assert "pickups: 2" in status_out
    assert "pickups opened: 0" in status_out
    assert main(["portal", "purge", "-c", config]) == 0
    assert "deleted 0 expired message(s)" in capsys.readouterr().out


def test_list_and_revoke(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(setup))
    seal = PortalSeal.load(setup.settings["portal"]["seal_key_file"])
    assert setup.deliver(portal_copy(seal=seal.make(RECIPIENTS))).status == EX_OK
    capsys.readouterr()

    assert main(["portal", "list", "-c", config]) == 0
    listing = capsys.readouterr().out
    message_id = listing.splitlines()[0]
    for recipient in RECIPIENTS:
        assert f"to       {recipient} (not read)" in listing

    assert (
        main(
            ["portal", "revoke", message_id, "--reason", "sent to the wrong patient", "-c", config]
        )
        == 0
    )
    assert f"revoked portal message {message_id}" in capsys.readouterr().out
    assert main(["portal", "list", "-c", config]) == 0
    assert capsys.readouterr().out == "no messages waiting\n"
    revoked = [r for r in setup.audit_records() if r.get("event") == "revoked"]
    assert [r["recipient"] for r in revoked] == list(RECIPIENTS)
    assert {r["reason"] for r in revoked} == {"sent to the wrong patient"}

    assert main(["portal", "revoke", message_id, "-c", config]) == 1
    assert "no message with id" in capsys.readouterr().err


def test_init_needs_seal_key_setting(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.settings["portal"]["seal_key_file"] = None
    setup.settings["portal"]["store_directory"] = str(setup.tmp / "unused-store")

    status = main(["portal", "init", "-c", str(write_config(setup))])

    assert status == 1
    assert "portal.seal_key_file is not set" in capsys.readouterr().err
    assert not (setup.tmp / "unused-store").exists()


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_unexpected_error_defers(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> IntakeResult:
        raise RuntimeError(SECRET_LINE)

    monkeypatch.setattr(Intake, "deliver", broken)
    monkeypatch.setattr(sys, "stdin", _Stdin(portal_copy(seal=setup.seal.make(RECIPIENTS))))

    status = portal_cmd.deliver(str(write_config(setup)), "4QtestQ2", SENDER)
    err = capsys.readouterr().err

    assert status == EX_TEMPFAIL
    assert err.startswith("4.3.0 ")
    assert "RuntimeError" in err
    assert SECRET_LINE not in err
    assert "unexpected RuntimeError" in caplog.text
    assert SECRET_LINE not in caplog.text


def test_time_limit_defers_and_withdraws(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def slow_send(*args: Any, **kwargs: Any) -> None:
        time.sleep(5)

    monkeypatch.setattr(portal_cmd, "DELIVERY_TIME_LIMIT", 1)
    monkeypatch.setattr(mailer, "send", slow_send)
    monkeypatch.setattr(sys, "stdin", _Stdin(portal_copy(seal=setup.seal.make(RECIPIENTS))))

    started = time.monotonic()
    status = portal_cmd.deliver(str(write_config(setup)), "4QtestQ3", SENDER)
    err = capsys.readouterr().err

    assert status == EX_TEMPFAIL
    assert time.monotonic() - started < 4
    assert "longer than 1 seconds" in err
    assert setup.stored_count() == 0
    assert [r["event"] for r in setup.audit_records()][-1] == "withdrawn"


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what root is told; needs root")
def test_status_as_root_names_owner(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    store = Path(setup.settings["portal"]["store_directory"])
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)

    status = main(["portal", "status", "-c", str(write_config(setup))])
    err = capsys.readouterr().err

    assert status == 1
    assert "runuser -u " in err
    assert f"postveil portal status -c {write_config(setup)}" in err
    assert list(store.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what root is told; needs root")
def test_revoke_as_root_keeps_arguments(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """The runuser line that root is given repeats the message id and the reason, so
    it can be run as it is."""
    store = Path(setup.settings["portal"]["store_directory"])
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)
    config = str(write_config(setup))
    message_id = "0123456789abcdef0123456789abcdef"

    status = main(
        ["portal", "revoke", message_id, "--reason", "sent to the wrong patient", "-c", config]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert "not as root" in err
    assert (
        f"-- postveil portal revoke {message_id} --reason 'sent to the wrong patient' -c {config}"
        in err
    )
    assert list(store.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what root is told; needs root")
def test_deliver_as_root_defers(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files root created in the store would lock the pipe user out of it.
    store = Path(setup.settings["portal"]["store_directory"])
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)
    monkeypatch.setattr(sys, "stdin", _Stdin(portal_copy(seal=setup.seal.make(RECIPIENTS))))

    status = portal_cmd.deliver(str(write_config(setup)), "4QtestQ4", SENDER)
    err = capsys.readouterr().err

    assert status == EX_TEMPFAIL
    assert err.startswith("4.3.5 ")
    assert "postveil portal deliver -c" in err
    assert list(store.iterdir()) == []


@pytest.mark.parametrize(
    "recipient",
    [
        "pat@example.net, kim@example.org",
        "Pat <pat@example.net>",
        "",
        "nobody",
        "pat@example.net\rBcc: kim@example.org",
        '"pat smith"@example.net',
        "pat@@example.net",
        # A To header would decode these to pat@example.net, or to nothing.
        "=?utf-8?q?pat?=@example.net",
        "pat@example.net.",
    ],
)
def test_sealed_non_address_recipient_rejected(setup: Setup, recipient: str) -> None:
    recipients = ("kim@example.org", recipient)
    result = setup.deliver(portal_copy(recipients, seal=setup.seal.make(recipients)))

    assert result.status == EX_DATAERR
    assert result.line == (
        "5.1.3 portal intake rejected the message: "
        "recipient header 2 of 2 is not a single mail address"
    )
    assert setup.stored_count() == 0
    time.sleep(0.2)
    assert setup.sink.messages == []
    assert [r["event"] for r in setup.audit_records()] == ["refused"]


def test_sealed_unicode_recipient_accepted(setup: Setup) -> None:
    recipients = ("pät@exämple.net",)
    result = setup.deliver(portal_copy(recipients, seal=setup.seal.make(recipients)))

    assert result.status == EX_OK
    assert setup.stored_count() == 1


@pytest.mark.parametrize("sender", ["a@b.test\nBcc: kim@example.org", "a@b.test\r", "a\x00@b.test"])
def test_sender_with_control_characters_rejected(setup: Setup, sender: str) -> None:
    intake = setup.intake()
    raw = portal_copy(seal=setup.seal.make(RECIPIENTS))
    try:
        result = intake.deliver(io.BytesIO(raw), sender=sender, queue_id="4QtestQ1")
    finally:
        intake.audit.close()

    assert result.status == EX_DATAERR
    assert result.line == (
        "5.1.7 portal intake rejected the message: envelope sender contains control characters"
    )
    assert setup.stored_count() == 0
    assert [r["event"] for r in setup.audit_records()] == ["refused"]
