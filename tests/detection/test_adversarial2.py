"""Ordinary mail written against the rules added for the fifth reviewer set.

A reviewer who had read those rules wrote these 66 messages to make them fire. Among
them are IT load tests "scheduled" like a stress test, roofing shingles that "ship on
Tuesday", and novels and history lessons about a character's illness. Others are a
horse's laceration and supplier invoices with an account number and lab reagents.
None of them is PHI. On the rules as first written, 56 were reported sensitive. After the rules
were narrowed (a health word must head its phrase, element tests need a clinical
unit, a third person's care needs a second health word or a care setting, veterinary
mail is left out, a state before a number marks only a driver's licence), 12 still
are (docs/detection-evaluation.md, "Precision check of the fifth set's rules"). The code of the
day before reported 2. The assertion is the current figure, with no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, load_labels

ADVERSARIAL2 = Path(__file__).parent / "adversarial2"
KNOWN_FALSE_POSITIVES = 12


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL2)


def test_adversarial2_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL2, labels, sensitive=0, ordinary=66)


def test_adversarial2_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = sorted(
        name
        for name in labels
        if detector.scan_message((ADVERSARIAL2 / name).read_bytes()).sensitive
    )
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
