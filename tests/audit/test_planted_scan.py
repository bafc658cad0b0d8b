"""The planted-value scan finds leaks by constant name, and a decision's trail contains none."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from postveil.audit import AuditLog, MessageDecision, RecipientDecision
from postveil.config.audit import AuditSection
from tests import planted


@pytest.fixture
def outside_dir() -> Iterator[Path]:
    """A directory outside pytest's base temp dir: the files here contain planted values on
    purpose, and the session's final scan must not see them."""
    with tempfile.TemporaryDirectory(prefix="postveil-planted-") as name:
        yield Path(name)


def test_scan_names_constant_not_value(outside_dir: Path) -> None:
    log = outside_dir / "milter.log"
    log.write_text(f"INFO 4Fq1: matched {planted.SSN} in body\n")

    leaks = planted.find_leaks([outside_dir])

    assert [(leak.path, leak.name) for leak in leaks] == [(log, "SSN")]
    assert planted.SSN not in repr(leaks)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ssn=" + planted.SSN.replace("-", ""), "SSN"),
        ("card " + planted.CARD_NUMBER.replace(" ", "-"), "CARD_NUMBER"),
        (planted.PATIENT_NAME.upper(), "PATIENT_NAME"),
        ("mbi:" + planted.MEDICARE_MBI.lower(), "MEDICARE_MBI"),
    ],
    ids=["digits-only", "other-separator", "upper-case", "lower-case"],
)
def test_scan_finds_variants(outside_dir: Path, text: str, name: str) -> None:
    (outside_dir / "audit.jsonl").write_text(text + "\n")
    assert [leak.name for leak in planted.find_leaks([outside_dir])] == [name]


def test_scan_finds_value_across_chunk_boundary(outside_dir: Path) -> None:
    path = outside_dir / "big.log"
    padding = b"x" * (planted._CHUNK - 4)
    path.write_bytes(padding + planted.MRN.encode() + b"\n")
    assert [leak.name for leak in planted.find_leaks([outside_dir])] == ["MRN"]


def test_scan_skips_message_stores_and_postfix_queue(outside_dir: Path) -> None:
    store = planted.message_store_dir(outside_dir / "sink")
    (store / "1.eml").write_text(f"Subject: results\n\nSSN {planted.SSN}\n")
    postfix = outside_dir / "postfix"
    for name in ("incoming", "active", "deferred"):
        (postfix / name).mkdir(parents=True)
    (postfix / "active" / "4Fq1").write_text(planted.NPI)
    (postfix / "maillog").write_text(f"4Fq1: leaked {planted.NPI}\n")

    leaks = planted.find_leaks([outside_dir])

    assert [(leak.path, leak.name) for leak in leaks] == [(postfix / "maillog", "NPI")]


def count_categories(text: str) -> dict[str, int]:
    """Count two categories with plain regular expressions.

    The project's detection engine belongs to the milter. This stand-in only turns a
    message with planted values into category counts for the audit record.
    """
    patterns = {"ssn": r"\b\d{3}-\d{2}-\d{4}\b", "mrn": r"\bMRN-\d{8}\b"}
    counts = {name: len(re.findall(pattern, text)) for name, pattern in patterns.items()}
    return {name: count for name, count in counts.items() if count}


def test_decision_trail_has_no_planted_value(
    tmp_path: Path, make_section: Callable[..., AuditSection], caplog: pytest.LogCaptureFixture
) -> None:
    message = EmailMessage()
    message["From"] = "frontdesk@clinic.example"
    message["To"] = "pat@patient.example"
    message["Message-ID"] = "<results-1@clinic.example>"
    message["Subject"] = "[secure] lab results"
    message.set_content(
        f"Patient {planted.PATIENT_NAME}, DOB {planted.DATE_OF_BIRTH}, SSN {planted.SSN},\n"
        f"{planted.MRN}, second SSN on file {planted.SSN}.\n"
    )
    store = planted.message_store_dir(tmp_path)
    (store / "results.eml").write_bytes(message.as_bytes())

    decision = MessageDecision(
        queue_id="4FzPlanted1",
        message_id=message["Message-ID"],
        sender=message["From"],
        recipients=[RecipientDecision(message["To"], "tls", "rule:tls-verified")],
        detections=count_categories(message.get_content()),
        tags=["subject:secure"],
        config_version="0123456789abcdef",
    )
    section = make_section()
    with caplog.at_level(logging.DEBUG), AuditLog(section, "postveil-milter") as log:
        log.record_message(decision)

    assert decision.detections == {"mrn": 1, "ssn": 2}
    assert planted.find_leaks([tmp_path]) == []
    assert planted.find_values(caplog.text) == []
