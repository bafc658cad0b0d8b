"""Ordinary mail written against the rules added for the ninth and tenth reviewer
sets' misses.

A reviewer who had read those rules wrote these 40 messages to make them fire. Rooms,
bays and beds are followed by names of rooms, brands and contractors. Ward shorthand
heads staff notices, and "c/o" addresses. History, fiction and news write "he
underwent surgery", a surgeon is "still in surgery" and a coach "has the concussion
protocol".
Serial numbers and shipments are followed by a month and year, and policy, gym and
supplier references take the label forms of hospital numbers. None of them is PHI. On the rules
as first written, 38 were reported sensitive, against none on the code before them.

The rules were then narrowed or dropped, as docs/detection-evaluation.md lists.
Afterwards 2 are still reported sensitive: a courier's licence number and a
supplier's account number, each written "No.:" and beside a drug on the same page,
as lower-case "no.:" labels were reported before. The assertion is that figure, with
no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

ADVERSARIAL4 = Path(__file__).parent / "adversarial4"
KNOWN_FALSE_POSITIVES = 2


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL4)


def test_adversarial4_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL4, labels, sensitive=0, ordinary=40)


def test_adversarial4_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, ADVERSARIAL4, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
