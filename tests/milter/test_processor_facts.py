"""The milter reads the TLS facts cache only for messages whose class lists ``tls``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from postveil.audit import generate_key_file
from postveil.config import load_config
from postveil.errors import TemporaryFailure
from postveil.milter.processor import MessageProcessor
from postveil.routing.decide import Method
from tests import planted

SENDER = "doctor@clinic.test"
RECIPIENT = "ann@partner.test"


def message(body: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: Today\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.fixture
def processor(tmp_path: Path) -> Iterator[MessageProcessor]:
    for name in ("audit", "smime"):
        (tmp_path / name).mkdir()
    (tmp_path / "gnupg").mkdir(mode=0o700)
    generate_key_file(tmp_path / "audit.key")
    config = {
        "milter": {"socket": f"unix:{tmp_path / 'milter.sock'}", "tls_lookup_timeout": "0s"},
        "policyd": {"cache_path": str(tmp_path / "tlsfacts.sqlite3")},
        "pgp": {"gnupg_home": str(tmp_path / "gnupg")},
        "smime": {"certificate_dir": str(tmp_path / "smime")},
        "audit": {"directory": str(tmp_path / "audit"), "key_file": str(tmp_path / "audit.key")},
    }
    path = tmp_path / "postveil.yaml"
    path.write_text(yaml.safe_dump(config))
    created = MessageProcessor(load_config(str(path)))
    # Break the real cache file: every read now fails inside SQLite.
    with sqlite3.connect(tmp_path / "tlsfacts.sqlite3") as connection:
        connection.execute("DROP TABLE domains")
    yield created
    created.close()


def test_clean_mail_routed_plain_needs_no_facts(processor: MessageProcessor) -> None:
    outcome = processor.decide(
        message("Lunch at noon in the usual place."), queue_id="Q1", sender=SENDER, recipients=[RECIPIENT]
    )

    assert [decision.method for decision in outcome.decisions] == [Method.PLAIN]


def test_sensitive_mail_defers_when_facts_cannot_be_read(processor: MessageProcessor) -> None:
    body = f"Patient {planted.PATIENT_NAME}, {planted.MRN}, SSN {planted.SSN}."

    with pytest.raises(TemporaryFailure, match="cannot read cache"):
        processor.decide(message(body), queue_id="Q2", sender=SENDER, recipients=[RECIPIENT])
