"""The second reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

On the rules of that time it gave precision 1.0 and recall 0.62 (31 of 50). The rules
were then changed for the shapes of mail it showed they missed, so the set is no
longer held out. The assertions are the figures after those changes and a precision
check, with no margin:
precision 1.0 and recall 0.82 (41 of 50). docs/detection-evaluation.md lists the misses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER2 = Path(__file__).parent / "reviewer2"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER2)


def test_reviewer2_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER2, labels, sensitive=50, ordinary=50)


def test_reviewer2_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER2, labels)
    assert result.messages.recall >= 41 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
