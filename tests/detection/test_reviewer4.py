"""The fourth reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

It was measured once before any rule was changed for it: precision 1.0 and recall 0.66
(33 of 50). The code of the day before gave precision 0.943 and the same recall. Two
general fixes followed (HTML table rows read as rows, and an age after "Surname,
Given"), so the set is no longer held out. The assertions are the figures after them,
with no margin: precision 1.0 and recall 0.70 (35 of 50). docs/detection.md lists the
misses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from postveil.detection.evaluate import evaluate

REVIEWER4 = Path(__file__).parent / "reviewer4"


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((REVIEWER4 / "labels.json").read_text(encoding="utf-8"))


def test_reviewer4_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in REVIEWER4.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == 50
    assert sum(1 for label in labels.values() if not label["sensitive"]) == 50
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"


def test_reviewer4_precision_and_recall(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((REVIEWER4 / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 35 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
