"""Retries after a partial re-injection, driven through the milter session.

A libmilter call that fails while the original transaction is changed cannot be
provoked through Postfix, so these tests replace libmilter's connection context
with a stand-in that records (or fails) the calls. Everything else is real: the
processor with its detection, routing and audit trail, the store file, and an SMTP
sink on loopback as the re-injection listener. The path through Postfix is in
test_reinject_retry_e2e.py.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import milter as libmilter  # pymilter's C extension, whose calls raise milter.error
import pytest

from postveil.config import load_config
from postveil.detection.validators import load_icd10cm
from postveil.harness.smtp import SmtpSink
from postveil.milter.processor import MessageProcessor
from postveil.milter.session import InFlight, PostveilMilter
from tests.milter.processor_config import write_processor_config

SENDER = "<doctor@clinic.test>"
VISIBLE = "<alice@example.test>"
HIDDEN = "<hidden@example.test>"
HEADERS = [
    ("From", b" Dr. Who <doctor@clinic.test>"),
    ("To", b" alice@example.test"),
    ("Subject", b" Monday"),
    ("Date", b" Sat, 5 Dec 2026 10:00:00 +0100"),
    ("Message-ID", b" <monday@clinic.test>"),
]
BODY = b"See you on Monday.\r\n"


class StandInContext:
    """Stands in for libmilter's connection context and records recipient changes and
    the reply. ``delrcpt_delay`` and ``delrcpt_error`` slow down or fail smfi_delrcpt."""

    def __init__(self, queue_id: str, *, delrcpt_delay: float = 0.0, delrcpt_error: bool = False) -> None:
        self.queue_id = queue_id
        self.delrcpt_delay = delrcpt_delay
        self.delrcpt_error = delrcpt_error
        self.deleted: list[str] = []
        self.reply: tuple[Any, ...] | None = None

    def setpriv(self, value: object) -> None:
        pass

    def getsymval(self, name: str) -> str | None:
        return self.queue_id if name == "i" else None

    def setreply(self, *reply: Any) -> None:
        self.reply = reply

    def delrcpt(self, recipient: str) -> None:
        time.sleep(self.delrcpt_delay)
        if self.delrcpt_error:
            raise libmilter.error("cannot delete recipient")
        self.deleted.append(recipient)


@pytest.fixture
def listener() -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.1", tls="none", port=0, hostname="reinject.test") as sink:
        yield sink


def make_processor(directory: Path, listener: SmtpSink, *, deadline: str = "270s") -> MessageProcessor:
    directory.mkdir()
    milter = {
        "socket": f"unix:{directory / 'milter.sock'}",
        "tls_lookup_timeout": "0s",
        "check_recipient_rewrites": False,
        "reinject": f"127.0.0.1:{listener.port}",
        "reinject_timeout": "10s",
        "reinject_deadline": deadline,
        "reinject_store": str(directory.parent / "reinjected.sqlite3"),
    }
    return MessageProcessor(load_config(write_processor_config(directory, milter=milter)))


def send(processor: MessageProcessor, context: StandInContext) -> int:
    """Run one delivery attempt of a clean message to VISIBLE with HIDDEN as Bcc.

    HIDDEN gets a re-injected copy of its own, and VISIBLE stays in the original
    transaction, from which smfi_delrcpt removes HIDDEN.
    """
    session = PostveilMilter(lambda: processor, InFlight())
    session._setctx(context)
    assert session.envfrom(SENDER) == Milter.CONTINUE
    assert session.envrcpt(VISIBLE) == Milter.CONTINUE
    assert session.envrcpt(HIDDEN) == Milter.CONTINUE
    for name, value in HEADERS:
        session.header(name, value)
    session.body(BODY)
    return int(session.eom())


def copies_for_hidden(listener: SmtpSink) -> int:
    return sum(1 for message in listener.messages if "hidden@example.test" in message.rcpt_tos)


def stored_keys(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM copies").fetchone()
    return int(count)


def test_libmilter_failure_then_retry_sends_once(
    tmp_path: Path, listener: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    processor = make_processor(tmp_path / "first", listener)
    failing = StandInContext("QUEUEID1", delrcpt_error=True)

    assert send(processor, failing) == Milter.TEMPFAIL
    assert copies_for_hidden(listener) == 1
    assert stored_keys(tmp_path / "reinjected.sqlite3") == 1

    working = StandInContext("QUEUEID2")
    with caplog.at_level(logging.INFO, logger="postveil.milter"):
        assert send(processor, working) == Milter.ACCEPT

    assert copies_for_hidden(listener) == 1
    assert working.deleted == [HIDDEN]
    assert "QUEUEID2: cleartext version for 1 recipient(s) already queued as" in caplog.text
    assert stored_keys(tmp_path / "reinjected.sqlite3") == 0


def test_damaged_store_defers_before_any_copy(tmp_path: Path, listener: SmtpSink) -> None:
    (tmp_path / "reinjected.sqlite3").write_bytes(b"not an SQLite database " * 200)
    processor = make_processor(tmp_path / "first", listener)
    context = StandInContext("QUEUEID1")

    assert send(processor, context) == Milter.TEMPFAIL

    assert context.reply == ("451", "4.3.0", "postveil could not process this message, try again later")
    assert listener.messages == []
    assert context.deleted == []


def test_deadline_passed_defers_and_keeps_keys(tmp_path: Path, listener: SmtpSink) -> None:
    # The deadline counts from end of message, so the code list the daemon loads at
    # start is loaded here first, to keep the decision well inside it.
    load_icd10cm()
    hurried = make_processor(tmp_path / "first", listener, deadline="2s")
    slow = StandInContext("QUEUEID1", delrcpt_delay=2.5)

    assert send(hurried, slow) == Milter.TEMPFAIL
    assert copies_for_hidden(listener) == 1
    assert stored_keys(tmp_path / "reinjected.sqlite3") == 1

    patient = make_processor(tmp_path / "retry", listener)
    assert send(patient, StandInContext("QUEUEID2")) == Milter.ACCEPT

    assert copies_for_hidden(listener) == 1
    assert stored_keys(tmp_path / "reinjected.sqlite3") == 0


def test_no_store_sends_copy_again(tmp_path: Path, listener: SmtpSink) -> None:
    """milter.reinject_store: null keeps the behaviour without a store: a duplicate."""
    directory = tmp_path / "first"
    directory.mkdir()
    milter = {
        "socket": f"unix:{directory / 'milter.sock'}",
        "tls_lookup_timeout": "0s",
        "check_recipient_rewrites": False,
        "reinject": f"127.0.0.1:{listener.port}",
        "reinject_store": None,
    }
    processor = MessageProcessor(load_config(write_processor_config(directory, milter=milter)))

    assert send(processor, StandInContext("QUEUEID1", delrcpt_error=True)) == Milter.TEMPFAIL
    assert send(processor, StandInContext("QUEUEID2")) == Milter.ACCEPT

    assert copies_for_hidden(listener) == 2
    assert not (tmp_path / "reinjected.sqlite3").exists()
