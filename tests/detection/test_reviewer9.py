"""The ninth reviewer set: 50 sensitive and 50 ordinary messages, written from the
description of what counts as PHI, without reading the rules. It is the working mail
of a US hospital system and its neighbours: front desk, wards, pharmacy, billing, HR,
IT, ambulance service, home health, patients and families.

It was measured once with the code of the day before the sentence rule (precision
1.0, recall 0.46) and once with the sentence rule after its review (precision 1.0,
recall 0.50). Classes of its misses were then read, so its later figures are not
held out. The classes were:
- SSNs written with spaces after "her social is" or under a quoted request;
- names after a bed number or a title in an aside;
- a name before a drug and its dose, and a drug "for" a person;
- a drug followed by a new clause ("my lisinopril I get woozy");
- ward notes that name a patient by a capitalised surname after a room number ("rm 5
  Gomez - NPO") or tie a name with ward shorthand ("No LOC, CT head neg").
The assertions are those of the code that was measured last, with no margin.
docs/detection-evaluation.md describes the set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER9 = Path(__file__).parent / "reviewer9"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER9)


def test_reviewer9_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER9, labels, sensitive=50, ordinary=50)


def test_reviewer9_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER9, labels)
    assert result.messages.recall >= 33 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
