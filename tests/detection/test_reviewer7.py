"""The seventh reviewer set: 50 sensitive and 50 ordinary messages, written from the
description of what counts as PHI, without reading the rules. The writers are clinics,
families, schools, HR, care homes, insurers and therapists in the US, the UK, India,
South Africa, Singapore, Canada and elsewhere.

It was measured once with the code of the day before the sentence rule (precision
0.96, recall 0.50) and once with the first version of that rule (recall 0.54). It then
served to find the classes of the remaining misses (given names alone, lay symptoms,
operations by name) and its one false positive (a plumber's licence in a signature),
so its later figures are not held out. The assertions are those
of the code that was measured last, with no margin, so a change that finds fewer fails.
docs/detection-evaluation.md describes the set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER7 = Path(__file__).parent / "reviewer7"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER7)


def test_reviewer7_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER7, labels, sensitive=50, ordinary=50)


def test_reviewer7_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER7, labels)
    assert result.messages.recall >= 39 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
