"""The reviewer set: 60 sensitive and 60 ordinary messages written without reading
the rules.

The set was written from the description of what counts as PHI, before its author
read the detector's code, keyword data, generated corpus or hand-written set. On the
rules of that time it gave precision 0.976 (one false positive, a coffee-machine
"Refill reminder") and recall 0.683 (41 of 60). The rules were then changed for the
shapes of mail it showed they missed, so the set is no longer held out.

Figures when these assertions were written: precision 1.0 and recall 0.95 (57 of
60). The assertions are those figures, with no margin. The misses are two ward notes
that write the patient's name in lower case after a room or bed number with no lab
value or shorthand ("mrs okafor", "(delgado)"), and a patient's forwarded message that
introduces himself ("this is Walter Grimsby") with chest pain and a stent.

The sentence rule (sentences.py) and the vocabulary added with it later raised
recall to 0.983 (59 of 60), and the recall assertion holds that figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from postveil.detection.evaluate import evaluate

REVIEWER = Path(__file__).parent / "reviewer"


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((REVIEWER / "labels.json").read_text(encoding="utf-8"))


def test_reviewer_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in REVIEWER.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == 60
    assert sum(1 for label in labels.values() if not label["sensitive"]) == 60
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"
        assert label.get("category"), f"{name} has no expected category"


def test_reviewer_precision_and_recall(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((REVIEWER / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 59 / 60, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
