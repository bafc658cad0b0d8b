"""Ordinary mail written against the sentence rule (sentences.py).

A reviewer who had read that rule wrote these 60 messages to make it fire. Among them
are pets, horses and build servers with people's names, companies and buildings
named after people, and imagined relatives in appeals and adverts. Others are film
reviews, stage directions, history society mail, volunteer awards, a school outbreak
notice and a phishing warning. None of them is PHI. On the rule as first written, 36 were reported
sensitive.

The rule was then narrowed. A person must be tied to the health word by a verb of
illness or care, a verb of having or taking right before it, or a pronoun. Sentences
about reviews, the stage, history, machines, shopping and phishing are skipped, and
pet-care words mark veterinary mail. Afterwards 2 are still reported sensitive: a dog
walker's note without a pet word, and a course quiz's fictional patient. The assertion
is that figure, with no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

ADVERSARIAL3 = Path(__file__).parent / "adversarial3"
KNOWN_FALSE_POSITIVES = 2


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(ADVERSARIAL3)


def test_adversarial3_labels_complete(labels: Labels) -> None:
    check_labels(ADVERSARIAL3, labels, sensitive=0, ordinary=60)


def test_adversarial3_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, ADVERSARIAL3, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
