"""The milter reads the TLS facts cache only for messages whose class lists ``tls``, and
records a TLS hold for the domains it routes by ``tls``."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from postveil.config import load_config
from postveil.errors import TemporaryFailure
from postveil.milter import processor as processor_module
from postveil.milter.processor import TLS_FACTS_NOT_LOOKED_UP, MessageProcessor
from postveil.routing.decide import Method
from postveil.tlsfacts import DomainFacts
from postveil.tlsfacts.cache import SqliteFactsCache
from tests import planted
from tests.milter.processor_config import write_processor_config

SENDER = "doctor@clinic.test"
RECIPIENT = "ann@partner.test"
SENSITIVE = f"Patient {planted.PATIENT_NAME}, {planted.MRN}, SSN {planted.SSN}."


def message(body: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: Today\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[MessageProcessor]:
    # No Postfix runs here, so there are no rewrite maps to read (tests/test_postfix_rewrites.py).
    created = MessageProcessor(load_config(str(write_processor_config(tmp_path))))
    yield created
    created.close()


@pytest.fixture
def broken_cache(processor: MessageProcessor) -> MessageProcessor:
    # Break the real cache file: every read now fails inside SQLite.
    with sqlite3.connect(processor.config.policyd.cache_path) as connection:
        connection.execute("DROP TABLE domains")
    return processor


def test_clean_mail_routed_plain_needs_no_facts(broken_cache: MessageProcessor) -> None:
    outcome = broken_cache.decide(
        message("Lunch at noon in the usual place."), queue_id="Q1", sender=SENDER, recipients=[RECIPIENT]
    )

    assert [decision.method for decision in outcome.decisions] == [Method.PLAIN]


def test_sensitive_mail_defers_when_facts_cannot_be_read(broken_cache: MessageProcessor) -> None:
    with pytest.raises(TemporaryFailure, match="cannot read cache"):
        broken_cache.decide(message(SENSITIVE), queue_id="Q2", sender=SENDER, recipients=[RECIPIENT])


def test_routing_by_tls_holds_the_domain(processor: MessageProcessor) -> None:
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))
    before = time.time()

    outcome = processor.decide(message(SENSITIVE), queue_id="Q3", sender=SENDER, recipients=[RECIPIENT])

    assert [decision.method for decision in outcome.decisions] == [Method.TLS]
    held_until = processor.cache.get("partner.test").tls_held_until  # type: ignore[union-attr]
    assert held_until is not None
    assert held_until >= before + processor.config.milter.tls_hold


def test_plain_routing_writes_no_hold(processor: MessageProcessor) -> None:
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))

    processor.decide(message("Lunch at noon."), queue_id="Q4", sender=SENDER, recipients=[RECIPIENT])

    assert processor.cache.get("partner.test").tls_held_until is None  # type: ignore[union-attr]


def test_hold_that_cannot_be_written_defers(processor: MessageProcessor) -> None:
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))
    with sqlite3.connect(processor.config.policyd.cache_path) as connection:
        connection.execute("DROP TABLE tls_holds")

    with pytest.raises(TemporaryFailure, match="cannot"):
        processor.decide(message(SENSITIVE), queue_id="Q5", sender=SENDER, recipients=[RECIPIENT])


def test_later_message_held_for_full_period(processor: MessageProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock replaces waiting half an hour. A message accepted later must be
    # covered for the whole tls_hold, even though the domain's hold is not written for
    # every message.
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))
    start = time.time()
    processor.decide(message(SENSITIVE), queue_id="Q6", sender=SENDER, recipients=[RECIPIENT])

    later = start + 1800
    monkeypatch.setattr(processor_module, "time", SimpleNamespace(time=lambda: later))
    processor.decide(message(SENSITIVE), queue_id="Q7", sender=SENDER, recipients=[RECIPIENT])

    held_until = processor.cache.get("partner.test").tls_held_until  # type: ignore[union-attr]
    assert held_until is not None
    assert held_until >= later + processor.config.milter.tls_hold


def test_hold_written_to_replaced_cache_file(processor: MessageProcessor) -> None:
    # The cache file is deleted and created again (say, postveil-policyd restarted
    # after an admin removed it) while the milter keeps running.
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))
    processor.decide(message(SENSITIVE), queue_id="Q8", sender=SENDER, recipients=[RECIPIENT])
    path = Path(processor.config.policyd.cache_path)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)
    replacement = SqliteFactsCache(path)
    replacement.put(DomainFacts("partner.test", override="encrypt"))

    processor.decide(message(SENSITIVE), queue_id="Q9", sender=SENDER, recipients=[RECIPIENT])

    held = replacement.get("partner.test")
    replacement.close()
    assert held is not None
    assert held.tls_held_until is not None


def test_domain_with_only_hold_is_unknown(processor: MessageProcessor) -> None:
    # After "postveil domain purge" only the hold is left; the domain's requirement
    # is unknown, not "none", so the milter asks postveil-policyd when allowed to.
    processor.cache.hold_tls("partner.test", time.time() + 3600)

    requirement = processor.tls_requirements([RECIPIENT])[RECIPIENT]

    assert requirement.reason == TLS_FACTS_NOT_LOOKED_UP


def test_damaged_hold_replaced_by_next_message(processor: MessageProcessor) -> None:
    processor.cache.put(DomainFacts("partner.test", override="encrypt"))
    with sqlite3.connect(processor.config.policyd.cache_path) as connection:
        connection.execute("INSERT INTO tls_holds (domain, until) VALUES ('partner.test', 'garbage')")
    before = time.time()

    processor.decide(message(SENSITIVE), queue_id="Q10", sender=SENDER, recipients=[RECIPIENT])

    held_until = processor.cache.get("partner.test").tls_held_until  # type: ignore[union-attr]
    assert held_until is not None
    assert before + processor.config.milter.tls_hold <= held_until < math.inf
