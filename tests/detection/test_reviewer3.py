"""The third reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

It was measured before any rule was changed for it: precision 0.974 and recall 0.74
(37 of 50). The rules were then changed for the shapes of mail it showed they missed,
so the set is no longer held out. The assertions are the figures after those changes
and a precision check, with no margin:
precision 1.0 and recall 0.86 (43 of 50). docs/detection.md lists the misses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from postveil.detection.evaluate import evaluate

REVIEWER3 = Path(__file__).parent / "reviewer3"


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((REVIEWER3 / "labels.json").read_text(encoding="utf-8"))


def test_reviewer3_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in REVIEWER3.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == 50
    assert sum(1 for label in labels.values() if not label["sensitive"]) == 50
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"


def test_reviewer3_precision_and_recall(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((REVIEWER3 / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 43 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
