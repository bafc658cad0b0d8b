"""Steps shared by scripts/train_classifier.py and bench/embedding_trial.py: the
labelled sets under tests/detection, their embeddings, the logistic regression and the
choice of its threshold. Needs NumPy (the ``classifier`` extra) and scikit-learn (the
``bench`` extra), and a checkout, because the sets are not installed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from postveil.classifier.model import Embedder
from postveil.detection import Detector
from postveil.detection.extract import extract_message

PIECE_WORDS = 170
"""Words per piece the model embeds; the model reads at most 256 tokens of a piece."""
MAX_WORDS = 510
"""Words of a message read: three pieces. Reading a 10 KB message (about 1,800
words) whole took 490 ms of CPU against 54 ms a piece (bench/classifier_latency.py),
and no labelled message is longer than 280 words."""
STRENGTH = 4.0
"""Inverse regularisation strength of the logistic regression."""


def labelled_sets(folder: Path) -> list[str]:
    """Return the names of the labelled sets (subfolders with a labels.json) of ``folder``."""
    return sorted(path.name for path in folder.iterdir() if (path / "labels.json").exists())


def load_set(folder: Path, detector: Detector) -> tuple[list[str], list[bool], list[bool]]:
    """Return the texts (as the detector extracts them), labels and rule verdicts of
    one labelled set."""
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    texts, truth, rules = [], [], []
    for file_name in sorted(labels):
        raw = (folder / file_name).read_bytes()
        texts.append("\n".join(extract_message(raw).texts))
        truth.append(bool(labels[file_name]["sensitive"]))
        rules.append(detector.scan_message(raw).sensitive)
    return texts, truth, rules


def threshold_for(scores: Any, rules: Any, truth: Any, precision: float) -> float | None:
    """Return the lowest probability at which the messages the model would add to the
    rules' (those the rules do not report) are sensitive at ``precision`` or more, or
    None when no threshold is. Arguments are NumPy arrays of equal length."""
    import numpy

    missed = ~rules
    for threshold in numpy.unique(scores):
        added = missed & (scores >= threshold)
        if added.any() and truth[added].mean() >= precision:
            return float(threshold)
    return None


def embed_set(folder: Path, detector: Detector, embedder: Embedder) -> tuple[Any, Any, Any]:
    """Return the embeddings, labels and rule verdicts of one labelled set, as NumPy
    arrays."""
    import numpy

    texts, truth, rules = load_set(folder, detector)
    vectors = numpy.array(embedder.vectors(texts, PIECE_WORDS, MAX_WORDS))
    return vectors, numpy.array(truth), numpy.array(rules)


def new_model() -> Any:
    """Return an untrained logistic regression with the settings the weights use."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=STRENGTH, max_iter=3000, class_weight="balanced")


def cross_validated_threshold(
    vectors: Any, truth: Any, rules: Any, precision: float
) -> float | None:
    """Return ``threshold_for`` the model's scores from 5-fold cross-validation."""
    from sklearn.model_selection import cross_val_predict

    scores = cross_val_predict(new_model(), vectors, truth, cv=5, method="predict_proba")[:, 1]
    return threshold_for(scores, rules, truth, precision)


def precision_value(text: str) -> float:
    """Parse ``--precision``: a number more than 0 and at most 1."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"invalid precision {text}: expected more than 0 and at most 1"
        )
    return value
