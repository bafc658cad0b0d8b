"""The second reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

On the rules of that time it gave precision 1.0 and recall 0.62 (31 of 50). The rules
were then changed for the shapes of mail it showed they missed, so the set is no
longer held out. The assertions are the figures after those changes and a precision
check, with no margin:
precision 1.0 and recall 0.82 (41 of 50). docs/detection.md lists the misses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from postveil.detection.evaluate import evaluate

REVIEWER2 = Path(__file__).parent / "reviewer2"


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((REVIEWER2 / "labels.json").read_text(encoding="utf-8"))


def test_reviewer2_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in REVIEWER2.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == 50
    assert sum(1 for label in labels.values() if not label["sensitive"]) == 50
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"


def test_reviewer2_precision_and_recall(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((REVIEWER2 / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 41 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
