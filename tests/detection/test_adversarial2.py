"""Ordinary mail written against the rules added for the fifth reviewer set.

A reviewer who had read those rules wrote these 66 messages to make them fire. Among
them are IT load tests "scheduled" like a stress test, roofing shingles that "ship on
Tuesday", and novels and history lessons about a character's illness. Others are a
horse's laceration and supplier invoices with an account number and lab reagents.
None of them is PHI. On the rules as first written, 56 were reported sensitive.

The rules were then narrowed. A health word must head its phrase, and element tests
need a clinical unit. A third person's care needs a second health word or a care
setting, and veterinary mail is left out. A state before a number marks only a
driver's licence. Afterwards 12 are still reported sensitive (docs/detection-evaluation.md,
"Precision check of the fifth set's rules"), against 2 with the code of the day
before. The assertion is the current figure, with no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

ADVERSARIAL2 = Path(__file__).parent / "adversarial2"
KNOWN_FALSE_POSITIVES = 12


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL2)


def test_adversarial2_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL2, labels, sensitive=0, ordinary=66)


def test_adversarial2_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, ADVERSARIAL2, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
