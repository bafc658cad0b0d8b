"""Ordinary mail that carries an account, member, policy or licence number beside
health words.

A reviewer had read a rule that let such numbers count only beside words of a care
record or bill, and wrote these 40 messages to make it fire. They are warranty and
freight claims, building, malpractice and travel insurance, benefit plan summaries, a
gym newsletter, a pharmacy's holiday hours, software release notes, a drug maker's
assistance rules and a manikin quote. None of them is PHI. With that rule 28 were
reported, and 35 without it; the rule was undone because it dropped far more patient
mail (test_reviewer12.py, docs/detection-evaluation.md "Twelfth reviewer set").

So this set measures the known weakness of identifier_with_health: a number after an
identifier label anywhere and a health word anywhere make a message sensitive, whoever
the number belongs to. The assertion is the current figure, with no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

ADVERSARIAL5 = Path(__file__).parent / "adversarial5"
KNOWN_FALSE_POSITIVES = 35


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL5)


def test_adversarial5_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL5, labels, sensitive=0, ordinary=40)


def test_adversarial5_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, ADVERSARIAL5, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
