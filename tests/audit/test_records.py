"""Record constructors reject values that do not belong in an audit record."""

from __future__ import annotations

from typing import Any

import pytest

from postveil.audit import (
    AdminOverride,
    ConfigEvent,
    DaemonEvent,
    InvalidRecordError,
    RecipientDecision,
    TlsRequirementChange,
)
from tests import planted
from tests.audit.conftest import make_decision

INVALID_DECISIONS: list[tuple[str, dict[str, Any], str]] = [
    ("empty queue id", {"queue_id": ""}, "queue_id: must not be empty"),
    ("newline in sender", {"sender": "a@b\nX-Injected: 1"}, "sender: contains a control character"),
    ("no recipients", {"recipients": []}, "at least one recipient"),
    ("matched value as category", {"detections": {planted.SSN: 1}}, "is not an identifier"),
    ("digits-only category", {"detections": {"5183729": 1}}, "is not an identifier"),
    ("negative count", {"detections": {"ssn": -1}}, "detections.ssn: expected a count >= 0"),
    ("bool count", {"detections": {"ssn": True}}, "detections.ssn: expected a count >= 0"),
    ("text as count", {"detections": {"ssn": "2"}}, "detections.ssn: expected a count >= 0"),
    ("matched value as tag", {"tags": [planted.CARD_NUMBER]}, "tags"),
    ("upper-case action", {"action": "ACCEPT"}, "action"),
    ("long message id", {"message_id": "<" + "x" * 1000 + ">"}, "message_id: 1002 characters"),
    ("lone surrogate", {"sender": "a\udcff@b"}, "sender: not encodable as UTF-8"),
    ("high surrogate", {"message_id": "<\ud83d@x>"}, "message_id: not encodable as UTF-8"),
    ("delete character", {"sender": "a\x7f@b"}, "sender: contains a control character"),
    ("surrogate then tab", {"sender": "a\ud800\t@b"}, "sender: contains a control character"),
    ("recipient as string", {"recipients": ["pat@patient.example"]}, "expected RecipientDecision"),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [case[1:] for case in INVALID_DECISIONS],
    ids=[case[0] for case in INVALID_DECISIONS],
)
def test_message_decision_rejects(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRecordError) as raised:
        make_decision(1, **overrides)
    assert expected in str(raised.value)
    assert planted.find_values(str(raised.value)) == []


def test_message_decision_accepts_null_sender() -> None:
    assert make_decision(1, sender="").fields()["sender"] == ""


def test_message_decision_accepts_non_ascii_text() -> None:
    sender = "zo\u00eb\U0001f600@b\u00fccher.example"
    assert make_decision(1, sender=sender).fields()["sender"] == sender


def test_message_decision_sorts_detections() -> None:
    decision = make_decision(1, detections={"ssn": 1, "card": 3, "mrn": 0})
    assert list(decision.fields()["detections"]) == ["card", "mrn", "ssn"]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: RecipientDecision("pat@patient.example", "TLS", "rule"), "recipients.method"),
        (
            lambda: RecipientDecision("pat@patient.example", "tls", "rule", fingerprint="f" * 201),
            "fingerprint",
        ),
        (lambda: TlsRequirementChange("clinic.example", None, "verify", "MTA STS", "x"), "source"),
        (lambda: AdminOverride("alice", "lab.example", "force tls", "x"), "action"),
        (
            lambda: ConfigEvent("restart", "/etc/postveil/postveil.yaml", "0123"),
            "invalid config event",
        ),  # type: ignore[arg-type]
        (lambda: DaemonEvent("crash", "0.1.0"), "invalid daemon event"),  # type: ignore[arg-type]
    ],
    ids=["method", "fingerprint", "tls-source", "override-action", "config-event", "daemon-event"],
)
def test_other_records_reject(build: Any, expected: str) -> None:
    with pytest.raises(InvalidRecordError) as raised:
        build()
    assert expected in str(raised.value)
