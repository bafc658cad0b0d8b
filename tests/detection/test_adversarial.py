"""Ordinary mail written against the rules: a check on false positives.

A reviewer who had read the rules wrote these 68 messages to make the detector
report ordinary mail as sensitive. They hold meeting rooms named after people, staff
lists, coding index rows, school mail about a named child, law and writing clinics,
well water tests and similar. None of them is PHI. On the rules of that time 58 were
reported sensitive. After the rules were tightened, 8 still are, all through rules
older than that day (docs/detection-evaluation.md, "Precision check against the new rules").
The assertion is that figure, with no margin, so a looser rule fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.detection import Detector
from tests.detection.labelled_sets import flagged_files

ADVERSARIAL = Path(__file__).parent / "adversarial"
KNOWN_FALSE_POSITIVES = 8


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, object]]:
    return json.loads((ADVERSARIAL / "labels.json").read_text(encoding="utf-8"))


def test_adversarial_labels_complete(labels: dict[str, dict[str, object]]) -> None:
    files = {path.name for path in ADVERSARIAL.glob("*.eml")}
    assert set(labels) == files
    assert not any(label["sensitive"] for label in labels.values())


def test_adversarial_false_positives(
    detector: Detector, labels: dict[str, dict[str, object]]
) -> None:
    flagged = flagged_files(detector, ADVERSARIAL, labels)
    assert len(flagged) <= KNOWN_FALSE_POSITIVES, flagged
