"""Would a trained text classifier beside the rules find more PHI in unseen mail?

A trial, not part of postveil. Each labelled set under tests/detection is held out in
turn. A logistic regression over hashed word and word-pair counts and the detector's
category counts is trained on all the other sets, then measured on the held-out one. The classifier's threshold is the lowest one that keeps precision at
``--precision`` (0.98 by default) or more on the training sets, cross-validated
within them. The table shows, per held-out
set, the rules alone, the classifier alone, and a message reported sensitive by
either.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/classifier_trial.py [--precision 0.98]

The sets of ordinary mail only (adversarial, adversarial2, generic2) report false
positives; the others report recall and precision. Message text never leaves this
process; the output names sets only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from postveil.detection.categories import ALL_CATEGORIES
from postveil.detection.extract import extract_message

REPO = Path(__file__).resolve().parent.parent
SETS = (
    "handwritten",
    "reviewer",
    "reviewer2",
    "reviewer3",
    "reviewer4",
    "reviewer5",
    "reviewer6",
    "adversarial",
    "adversarial2",
    "generic2",
)
CATEGORIES = sorted(ALL_CATEGORIES)


def load_set(name: str, detector: Detector) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return the texts, labels, rule verdicts and category counts of one set."""
    folder = REPO / "tests" / "detection" / name
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    texts, truth, rules, counts = [], [], [], []
    for file_name in sorted(labels):
        raw = (folder / file_name).read_bytes()
        texts.append("\n".join(extract_message(raw).texts))
        truth.append(bool(labels[file_name]["sensitive"]))
        verdict = detector.scan_message(raw)
        rules.append(verdict.sensitive)
        counts.append([min(verdict.categories.get(category, 0), 3) for category in CATEGORIES])
    return texts, np.array(truth), np.array(rules), np.array(counts, dtype=float)


def features(vectorizer: HashingVectorizer, texts: list[str], counts: np.ndarray) -> csr_matrix:
    return hstack([vectorizer.transform(texts), csr_matrix(counts)]).tocsr()


def threshold_for(scores: np.ndarray, truth: np.ndarray, precision: float) -> float:
    """Return the lowest score threshold whose precision on ``truth`` is at least
    ``precision`` (1.0, which reports nothing, when none is)."""
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        if predicted.sum() and truth[predicted].mean() >= precision:
            return float(threshold)
    return 1.0


def figures(truth: np.ndarray, predicted: np.ndarray) -> str:
    if not truth.any():
        return f"FP {int(predicted.sum())} of {len(truth)}"
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    return f"P {precision:.2f} R {tp / truth.sum():.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--precision",
        type=float,
        default=0.98,
        help="precision the threshold must keep on the training sets (default 0.98)",
    )
    args = parser.parse_args()
    if not 0 < args.precision <= 1:
        parser.error("--precision must be more than 0 and at most 1")
    detector = Detector(DetectionSection())
    vectorizer = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm="l2")
    data = {name: load_set(name, detector) for name in SETS}
    print("| held-out set | rules | classifier | rules or classifier |")
    print("|---|---|---|---|")
    for held_out in SETS:
        train = [name for name in SETS if name != held_out]
        texts = [text for name in train for text in data[name][0]]
        truth = np.concatenate([data[name][1] for name in train])
        counts = np.vstack([data[name][3] for name in train])
        matrix = features(vectorizer, texts, counts)
        model = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
        scores = cross_val_predict(model, matrix, truth, cv=5, method="predict_proba")[:, 1]
        threshold = threshold_for(scores, truth, args.precision)
        model.fit(matrix, truth)
        test_texts, test_truth, test_rules, test_counts = data[held_out]
        test_scores = model.predict_proba(features(vectorizer, test_texts, test_counts))[:, 1]
        classified = test_scores >= threshold
        print(
            f"| {held_out} | {figures(test_truth, test_rules)} | {figures(test_truth, classified)} "
            f"| {figures(test_truth, classified | test_rules)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
