"""Protocol steps without a reply on a unix socket, and failures in them.

These steps only collect the envelope, headers and body, so no message sent through
Postfix makes them fail. The failure is therefore provoked in-process, against a
stand-in for libmilter's connection context that records the reply; everything
after negotiation runs the real session code. The whole path through Postfix, on a
unix socket (quiet) and on a TCP socket (a reply to every step), is covered by
test_milter_postfix.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import Milter
import pytest

from postveil.audit import MessageDecision
from postveil.config import load_config
from postveil.milter.session import MACROS, QUIET_STEPS, InFlight, PostveilMilter

REPO = Path(__file__).resolve().parents[2]
EVERY_STEP_FLAG = 0x1FFFFF


class RecordingContext:
    """Stands in for libmilter's per-connection context: keeps the last reply."""

    def __init__(self) -> None:
        self.reply: tuple[Any, ...] | None = None
        self.private: object = None
        self.macros: dict[int, str] = {}

    def setpriv(self, value: object) -> None:
        self.private = value

    def getsymval(self, name: str) -> str | None:
        return "QUEUEID1" if name == "i" else None

    def setreply(self, *reply: Any) -> None:
        self.reply = reply

    def setsymlist(self, stage: int, macros: str) -> None:
        self.macros[stage] = macros


class RecordingAudit:
    """Stands in for the audit trail and keeps the message records. The trail itself is
    tested in tests/audit; here only which record the session writes matters."""

    def __init__(self) -> None:
        self.records: list[MessageDecision] = []

    def record_message(self, record: MessageDecision) -> None:
        self.records.append(record)


def negotiated(
    quiet: bool, audit: RecordingAudit | None = None
) -> tuple[PostveilMilter, RecordingContext, list[int]]:
    config = load_config(REPO / "conf" / "postveil.yaml")
    processor = SimpleNamespace(config=config, audit=audit or RecordingAudit())
    session = PostveilMilter(lambda: processor, InFlight(), quiet=quiet)  # type: ignore[arg-type, return-value]
    context = RecordingContext()
    session._setctx(context)
    options = [0x1FF | Milter.SETSYMLIST, EVERY_STEP_FLAG, 0, 0]
    assert session.negotiate(options) == Milter.CONTINUE
    return session, context, options


def test_unix_session_skips_replies() -> None:
    _, _, options = negotiated(quiet=True)
    assert options[1] & QUIET_STEPS == QUIET_STEPS


def test_tcp_session_replies_to_every_step() -> None:
    _, _, options = negotiated(quiet=False)
    assert options[1] & QUIET_STEPS == 0


def test_only_queue_id_macro_requested() -> None:
    _, context, _ = negotiated(quiet=True)
    assert context.macros[Milter.M_ENVRCPT] == "i"
    assert context.macros[Milter.M_EOM] == "i"
    assert context.macros[Milter.M_CONNECT] == ""
    assert set(context.macros) == set(MACROS)


def test_quiet_failure_deferred_to_eom(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session, context, _ = negotiated(quiet=True)
    assert session.envfrom("<sender@org.test>") == Milter.NOREPLY

    def broken(recipient: str) -> int:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(session, "_envrcpt", broken)
    assert session.envrcpt("<alice@example.test>") == Milter.NOREPLY
    assert session.header("Subject", b" hello") == Milter.NOREPLY
    assert session.body(b"text\r\n") == Milter.NOREPLY
    assert session.headers == []
    assert session.body_size == 0

    assert session.eom() == Milter.TEMPFAIL
    assert context.reply == ("451", "4.3.0", "postveil could not process this message, try again later")
    assert "QUEUEID1: temporary failure at end of message: RCPT TO failed: RuntimeError" in caplog.text


def test_next_message_starts_clean_after_deferred_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _, _ = negotiated(quiet=True)
    session.envfrom("<sender@org.test>")
    monkeypatch.setattr(session, "_header", lambda name, value: 1 / 0)
    session.header("Subject", b" hello")
    assert session.eom() == Milter.TEMPFAIL
    monkeypatch.undo()

    assert session.envfrom("<sender@org.test>") == Milter.NOREPLY
    session.header("Subject", b" hello")
    assert session.headers == [("Subject", b" hello")]
    session.abort()


def test_shutdown_reply_kept_for_eom() -> None:
    session, context, _ = negotiated(quiet=True)
    session._in_flight.stopping = True
    assert session.envfrom("<sender@org.test>") == Milter.NOREPLY
    assert session.eom() == Milter.TEMPFAIL
    assert context.reply == ("421", "4.3.2", "postveil is restarting, try again later")


def broken_step(*args: object) -> int:
    raise RuntimeError("simulated failure")


def recorded_tempfail(audit: RecordingAudit) -> MessageDecision:
    assert len(audit.records) == 1
    record = audit.records[0]
    assert record.action == "tempfail"
    assert record.queue_id == "QUEUEID1"
    return record


def test_quiet_rcpt_failure_recorded_at_eom(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = RecordingAudit()
    session, _, _ = negotiated(quiet=True, audit=audit)
    session.envfrom("<sender@org.test>")
    session.envrcpt("<alice@example.test>")
    monkeypatch.setattr(session, "_envrcpt", broken_step)
    session.envrcpt("<bob@example.test>")
    monkeypatch.undo()
    session.envrcpt("<carol@example.test>")
    session.header("Subject", b" hello")
    assert audit.records == []

    assert session.eom() == Milter.TEMPFAIL
    record = recorded_tempfail(audit)
    assert record.sender == "sender@org.test"
    assert [item.address for item in record.recipients] == ["alice@example.test", "carol@example.test"]
    assert {item.method for item in record.recipients} == {"tempfail"}
    assert record.recipients[0].reason == "temporary failure at end of message: RCPT TO failed: RuntimeError"


def test_quiet_header_failure_recorded_at_eom(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = RecordingAudit()
    session, _, _ = negotiated(quiet=True, audit=audit)
    session.envfrom("<sender@org.test>")
    session.envrcpt("<alice@example.test>")
    monkeypatch.setattr(session, "_header", broken_step)
    session.header("Subject", b" hello")
    session.body(b"text\r\n")
    assert session.eom() == Milter.TEMPFAIL
    record = recorded_tempfail(audit)
    assert [item.address for item in record.recipients] == ["alice@example.test"]
    assert record.recipients[0].reason == "temporary failure at end of message: header failed: RuntimeError"


def test_tempfail_record_keeps_message_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # The retry's record has the Message-ID, so the deferral's record needs it too to
    # be matched with it: the retry gets another queue id.
    audit = RecordingAudit()
    session, _, _ = negotiated(quiet=True, audit=audit)
    session.envfrom("<sender@org.test>")
    session.envrcpt("<alice@example.test>")
    session.header("Message-ID", b"\r\n <retry-1@org.test>")
    session.header("Subject", b" hello")
    session.body(b"text\r\n")
    # A failure at end of message, where a failed re-injection defers a message.
    monkeypatch.setattr(session, "_route", broken_step)

    assert session.eom() == Milter.TEMPFAIL
    assert recorded_tempfail(audit).message_id == "<retry-1@org.test>"


def test_tcp_rcpt_failure_defers_whole_message(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = RecordingAudit()
    session, context, _ = negotiated(quiet=False, audit=audit)
    assert session.envfrom("<sender@org.test>") == Milter.CONTINUE
    assert session.envrcpt("<alice@example.test>") == Milter.CONTINUE
    monkeypatch.setattr(session, "_envrcpt", broken_step)
    assert session.envrcpt("<bob@example.test>") == Milter.TEMPFAIL
    monkeypatch.undo()

    # Postfix keeps the message for alice and carol, but it leaves postveil unrouted,
    # so the whole message is deferred at its end.
    assert session.envrcpt("<carol@example.test>") == Milter.CONTINUE
    assert session.header("Subject", b" hello") == Milter.CONTINUE
    assert session.headers == []
    assert session.body(b"text\r\n") == Milter.CONTINUE
    assert session.eom() == Milter.TEMPFAIL
    assert context.reply == ("451", "4.3.0", "postveil could not process this message, try again later")
    record = recorded_tempfail(audit)
    assert [item.address for item in record.recipients] == ["alice@example.test", "carol@example.test"]


def test_tcp_header_failure_recorded_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = RecordingAudit()
    session, _, _ = negotiated(quiet=False, audit=audit)
    session.envfrom("<sender@org.test>")
    session.envrcpt("<alice@example.test>")
    monkeypatch.setattr(session, "_header", broken_step)
    # Postfix calls no end of message after a header step's temporary failure.
    assert session.header("Subject", b" hello") == Milter.TEMPFAIL
    record = recorded_tempfail(audit)
    assert [item.address for item in record.recipients] == ["alice@example.test"]
    assert record.recipients[0].reason == "temporary failure at header: RuntimeError"
    assert session.recipients == []


def test_tcp_mail_from_failure_writes_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = RecordingAudit()
    session, _, _ = negotiated(quiet=False, audit=audit)
    monkeypatch.setattr(session, "_envfrom", broken_step)
    assert session.envfrom("<sender@org.test>") == Milter.TEMPFAIL
    monkeypatch.undo()
    assert audit.records == []
    assert session.sender is None
    assert session._in_flight.count == 0
