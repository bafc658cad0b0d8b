"""The eleventh reviewer set: 50 sensitive and 50 ordinary messages, written from the
description of what counts as PHI, without reading the rules. Its writers are
hospitals, practices, dentists, pharmacies, insurers, employers, schools, coaches,
families, lawyers and help desks in the US, Canada, the UK, Ireland, South Africa,
Kenya, Singapore and New Zealand. Seven are multipart, with HTML parts or CSV files.

It was measured once, after the rules written for the ninth and tenth sets' misses
(identifier forms, ward notes, sports injuries), and no rule was changed for it. It
gave precision 1.0 and recall 0.54 (27 of 50). The code before those rules found 26
of 50. The assertions are those figures, with no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, evaluate_folder, load_labels

REVIEWER11 = Path(__file__).parent / "reviewer11"


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(REVIEWER11)


def test_reviewer11_labels_complete(labels: Labels) -> None:
    check_labels(REVIEWER11, labels, sensitive=50, ordinary=50)


def test_reviewer11_precision_and_recall(detector: Detector, labels: Labels) -> None:
    result = evaluate_folder(detector, REVIEWER11, labels)
    assert result.messages.recall >= 27 / 50, result.false_negatives
    assert result.messages.precision >= 1.0, result.false_positives
