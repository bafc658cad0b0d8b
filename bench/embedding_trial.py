"""How much would postveil-classifierd add to the rules on mail from a new writer?

Each labelled set under tests/detection is held out in turn: the classifier of
postveil.classifier (all-MiniLM-L6-v2 embeddings and a logistic regression, as
scripts/train_classifier.py trains it) is trained on all the other sets and measured
on the held-out one. bench/classifier_trial.py tried word counts the same way.

The threshold is chosen on the training sets only. It is the lowest probability at
which the messages the model adds to the rules' are sensitive at ``--precision`` or
more (0.9 by default, as for the shipped weights). The model's scores for that choice
come from cross-validation within the training sets. The table shows, per held-out set, the rules alone and a
message reported by the rules or by the model.

    .venv/bin/pip install torch==2.13.0
    .venv/bin/pip install -e '.[classifier,bench]'
    .venv/bin/python bench/embedding_trial.py [--precision 0.9]

Message text never leaves this process; the output names sets only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from postveil.classifier.model import Embedder
from postveil.classifier.training import (
    cross_validated_threshold,
    embed_set,
    labelled_sets,
    new_model,
    precision_value,
)
from postveil.config.detection import DetectionSection
from postveil.detection import Detector

SETS_DIR = Path(__file__).resolve().parent.parent / "tests" / "detection"


def figures(truth: np.ndarray, predicted: np.ndarray) -> str:
    if not truth.any():
        return f"FP {int(predicted.sum())} of {len(truth)}"
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    return f"TP {tp} of {int(truth.sum())}, FP {fp} of {int((~truth).sum())}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--precision",
        type=precision_value,
        default=0.9,
        help="precision of the model's additions on the training sets (default 0.9)",
    )
    args = parser.parse_args()

    embedder = Embedder()
    detector = Detector(DetectionSection())
    names = labelled_sets(SETS_DIR)
    started = time.process_time()
    data = {name: embed_set(SETS_DIR / name, detector, embedder) for name in names}
    seconds = time.process_time() - started
    count = sum(len(data[name][1]) for name in names)
    print(f"{count} messages scanned and embedded in {seconds:.0f} s of CPU\n")

    print("| held-out set | rules | rules or model | threshold |")
    print("|---|---|---|---|")
    for held_out in names:
        train = [name for name in names if name != held_out]
        vectors = np.vstack([data[name][0] for name in train])
        truth = np.concatenate([data[name][1] for name in train])
        rules = np.concatenate([data[name][2] for name in train])
        threshold = cross_validated_threshold(vectors, truth, rules, args.precision)
        test_vectors, test_truth, test_rules = data[held_out]
        if threshold is None:
            either = test_rules
        else:
            classifier = new_model().fit(vectors, truth)
            either = test_rules | (classifier.predict_proba(test_vectors)[:, 1] >= threshold)
        threshold_text = "none" if threshold is None else f"{threshold:.3f}"
        print(
            f"| {held_out} | {figures(test_truth, test_rules)} | {figures(test_truth, either)} | {threshold_text} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
