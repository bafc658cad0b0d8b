"""Ordinary mail about health that is about no real person, written against the
classifier (docs/classifier.md).

A reviewer who had read when postveil-classifierd is sent a message wrote these 40
messages to make the model fire. Among them are vets' notes about named animals,
actors' briefs and script notes about invented patients, training cases, anonymised
journal-club cases, trial adverts, recalls, guidelines and menus. None of them is PHI.
The rules report 7 of them: invented characters and test patients read as patients'
names, a lab's proficiency-test results, and a template of a results email. The
assertion is that figure, with no margin. tests/classifier/test_held_out.py checks
that the classifier adds none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

ADVERSARIAL6 = Path(__file__).parent / "adversarial6"
KNOWN_FALSE_POSITIVES = 7


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL6)


def test_adversarial6_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL6, labels, sensitive=0, ordinary=40)


def test_adversarial6_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, ADVERSARIAL6, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
