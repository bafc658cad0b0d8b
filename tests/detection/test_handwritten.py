"""The hand-written held-out set: 40 sensitive and 40 ordinary messages.

Figures when these assertions were written: precision 1.0 (no false positive) and
recall 0.975 (39 of 40). The miss is a therapist's "Following up on Jordan Mbeki"
with suicidal ideation and sertraline, which has no lab value or clinical shorthand
to tie the name to them. Before the rules for unlabelled names, lab values and
clinical shorthand, the same set gave precision 1.0 and recall 0.25. The assertions
leave one message of margin each way.

The project wrote this set too, after reading the rules, so it is a check on the
rules' reach rather than an independent measurement.

Since the sentence rule (sentences.py), neg02.eml is reported: a manager's notice that
"Gwen Talbot is out this week recovering from knee surgery". Its label keeps the
earlier decision that staff absence notices are not PHI. Every outside reviewer since
labelled such mail sensitive, and docs/detection.md now treats it so. The precision
assertion's margin is that message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from postveil.detection.evaluate import evaluate
from postveil.detection.evaluate import main as evaluate_main

HANDWRITTEN = Path(__file__).parent / "handwritten"


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((HANDWRITTEN / "labels.json").read_text(encoding="utf-8"))


def test_handwritten_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in HANDWRITTEN.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == 40
    assert sum(1 for label in labels.values() if not label["sensitive"]) == 40
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"


def test_handwritten_precision_and_recall(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((HANDWRITTEN / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 0.95, result.false_negatives
    assert result.messages.precision >= 0.97, result.false_positives


def test_evaluate_without_category_labels(capsys: pytest.CaptureFixture[str]) -> None:
    """The set labels messages only, so the per-category table is left out."""
    assert evaluate_main([str(HANDWRITTEN)]) == 0
    output = capsys.readouterr().out
    assert "precision:" in output
    assert "category" not in output
