"""The decision record's structure."""

from __future__ import annotations

import dataclasses
import json

import pytest

from postveil.routing import DecisionRecord, Method, RecipientDecision


def _record() -> DecisionRecord:
    return DecisionRecord.build(
        queue_id="4ABC123",
        message_id="<m@sender.example>",
        sender="doc@sender.example",
        message_class="sensitive",
        class_reason="detection rule mrn",
        action="deliver",
        decisions=[
            RecipientDecision("a@example.org", Method.PGP, "PGP key 1234 valid", "F" * 40),
            RecipientDecision("b@example.org", None, "no acceptable method", None),
        ],
        tags=["[secure]"],
        categories={"mrn": 2, "dob": 1},
        detection_rule="mrn",
        unscanned_parts=1,
        config_version="abcd",
    )


def test_to_dict_fields() -> None:
    data = _record().to_dict()

    assert data["queue_id"] == "4ABC123"
    assert data["recipients"][0] == {
        "recipient": "a@example.org",
        "method": "pgp",
        "reason": "PGP key 1234 valid",
        "fingerprint": "F" * 40,
    }
    assert data["recipients"][1]["method"] is None
    assert data["detection"] == {"rule": "mrn", "categories": {"dob": 1, "mrn": 2}, "unscanned_parts": 1}
    assert data["tags"] == ["[secure]"]


def test_to_dict_is_json() -> None:
    assert json.loads(json.dumps(_record().to_dict())) == _record().to_dict()


def test_record_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _record().queue_id = "other"  # type: ignore[misc]


def test_log_line_is_one_json_line() -> None:
    line = _record().log_line()

    assert "\n" not in line
    assert json.loads(line) == _record().to_dict()
