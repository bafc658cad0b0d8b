"""The eighth reviewer set: 50 sensitive and 50 ordinary messages, written from the
description of what counts as PHI, without reading the rules. It leans on everyday
prose without field labels: parents, employees, managers, carers, neighbours, social
workers, case managers, paralegals, interpreters and dispatchers.

It was measured once with the code of the day before the sentence rule (precision
0.95, recall 0.42) and once with that rule as narrowed against the third adversarial
set (precision 0.96, recall 0.52). Its misses were then read for their classes, so
its later figures are not held out. The classes were:
- verbs of care, and a pronoun before "on";
- a writer who introduces themselves or signs;
- a paragraph that goes on about the person of the one before;
- words such as "stroke" tied to a person;
- a sports digest, its one false positive;
- later, sports injuries ("tore his ACL", "still in concussion protocol"), a kind of
  operation between the verb and its name ("had his right total knee replacement")
  and home oxygen.
The assertions are those of the code that was measured last, with no margin.
docs/detection-evaluation.md describes the set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER8 = Path(__file__).parent / "reviewer8"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER8)


def test_reviewer8_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER8, labels, sensitive=50, ordinary=50)


def test_reviewer8_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER8, labels)
    assert result.messages.recall >= 41 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
