"""The fifth reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

It was measured once before any rule was changed for it: precision 1.0 and recall 0.58
(29 of 50) with the day's earlier general changes, and 0.54 on the code of the day
before. The rules were then widened against its misses, so the set is no longer held
out. They added lay health words, the reader's own care in plain words, a third
person's care after their name, and bookings and test findings addressed to the
reader. The assertions are the figures after that, with no margin: precision 1.0 and
recall 0.90 (45 of 50).
docs/detection-evaluation.md lists the misses.

The sentence rule (sentences.py) and the vocabulary added with it later raised
recall to 0.94 (47 of 50), and the recall assertion holds that figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER5 = Path(__file__).parent / "reviewer5"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER5)


def test_reviewer5_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER5, labels, sensitive=50, ordinary=50)


def test_reviewer5_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER5, labels)
    assert result.messages.recall >= 47 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
