"""The sixth reviewer set: 50 sensitive and 50 ordinary messages from settings outside
the US (UK, Ireland, Australia, New Zealand, Canada), written from the description of
what counts as PHI, without reading the rules.

It was measured once, after the rules for the fifth set, and no rule was changed for
it: precision 1.0 and recall 0.42 (21 of 50); the code of the day before found 20.
Care words of other fields (dentistry, physiotherapy, UK terms) added afterwards as a
class found one more. The assertions are those figures, precision 1.0 and recall 0.44
(22 of 50), with no margin, so a change that finds fewer fails.
docs/detection-evaluation.md lists the kinds of misses.

The sentence rule (sentences.py) and the vocabulary added with it later raised
recall to 0.58 (29 of 50), and the recall assertion holds that figure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER6 = Path(__file__).parent / "reviewer6"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER6)


def test_reviewer6_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER6, labels, sensitive=50, ordinary=50)


def test_reviewer6_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER6, labels)
    assert result.messages.recall >= 30 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
