"""Shared steps of the tests over labelled sets of messages (a folder of .eml files and
its labels.json)."""

from __future__ import annotations

import json
from pathlib import Path

from postveil.detection import Detector
from postveil.detection.evaluate import Evaluation, evaluate

Labels = dict[str, dict[str, object]]


def load_labels(folder: Path) -> Labels:
    return json.loads((folder / "labels.json").read_text(encoding="utf-8"))


def check_labels(folder: Path, labels: Labels, sensitive: int, ordinary: int) -> None:
    """Assert that the labels cover every message of ``folder``, in the given numbers
    of sensitive and ordinary ones, and that each gives a reason."""
    files = {path.name for path in folder.glob("*.eml")}
    assert set(labels) == files
    assert sum(1 for label in labels.values() if label["sensitive"]) == sensitive
    assert sum(1 for label in labels.values() if not label["sensitive"]) == ordinary
    for name, label in labels.items():
        assert label.get("why"), f"{name} has no reason"


def evaluate_folder(detector: Detector, folder: Path, labels: Labels) -> Evaluation:
    """Scan every labelled message of ``folder`` and compare the verdicts with the labels."""
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((folder / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    return evaluate(labels, verdicts.__getitem__)


def flagged_files(detector: Detector, folder: Path, labels: Labels) -> list[str]:
    """Return, sorted, the labelled messages of ``folder`` that the detector reports
    sensitive."""
    return sorted(
        name for name in labels if detector.scan_message((folder / name).read_bytes()).sensitive
    )
