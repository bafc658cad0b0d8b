"""The third reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

It was measured before any rule was changed for it: precision 0.974 and recall 0.74
(37 of 50). The rules were then changed for the shapes of mail it showed they missed,
so the set is no longer held out. The assertions are the figures after those changes
and a precision check, with no margin:
precision 1.0 and recall 0.86 (43 of 50). docs/detection-evaluation.md lists the misses.

The sentence rule (sentences.py) and the vocabulary added with it later raised
recall to 0.90 (45 of 50), and the recall assertion holds that figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER3 = Path(__file__).parent / "reviewer3"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER3)


def test_reviewer3_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER3, labels, sensitive=50, ordinary=50)


def test_reviewer3_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER3, labels)
    assert result.messages.recall >= 45 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
