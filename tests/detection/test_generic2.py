"""Ordinary mail that speaks to the reader about health: a check on false positives.

A reviewer who had not read the rules wrote these 60 messages: newsletters, pharmacy
and insurer campaigns, fitness apps, vet reminders, exam bookings, recalls and
similar, each addressing the reader in the second person with drug, test and
appointment words. None of them is about the reader's own care. Before the rules for
the reader's own care were added, 2 were reported sensitive. With them, and with
appointments of other kinds ("your exam appointment") left out, 1 is: an app's release
notes about refill reminders (docs/detection-evaluation.md). The assertion is that figure, with
no margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import Labels, check_labels, flagged_files, load_labels

GENERIC2 = Path(__file__).parent / "generic2"
KNOWN_FALSE_POSITIVES = 1


@pytest.fixture(scope="module")
def labels() -> Labels:
    return load_labels(GENERIC2)


def test_generic2_labels_complete(labels: Labels) -> None:
    check_labels(GENERIC2, labels, sensitive=0, ordinary=60)


def test_generic2_false_positives(detector: Detector, labels: Labels) -> None:
    flagged = flagged_files(detector, GENERIC2, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
