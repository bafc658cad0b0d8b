"""The fourth reviewer set: 50 sensitive and 50 ordinary messages written from the
description of what counts as PHI, without reading the rules.

It was measured once before any rule was changed for it: precision 1.0 and recall 0.66
(33 of 50). The code of the day before gave precision 0.943 and the same recall. Two
general fixes followed (HTML table rows read as rows, and an age after "Surname,
Given"), so the set is no longer held out. They gave precision 1.0 and recall 0.70 (35
of 50). The rules written the next day for the fifth reviewer set (the reader's own
care in plain words, a third person's care after their name, labels across line
breaks) raised recall to 0.84 (42 of 50), and the assertions are those figures, with no
margin. docs/detection-evaluation.md lists the misses.

The sentence rule (sentences.py) and the vocabulary added with it later raised
recall to 0.90 (45 of 50), and the recall assertion holds that figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER4 = Path(__file__).parent / "reviewer4"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER4)


def test_reviewer4_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER4, labels, sensitive=50, ordinary=50)


def test_reviewer4_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER4, labels)
    assert result.messages.recall >= 45 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
