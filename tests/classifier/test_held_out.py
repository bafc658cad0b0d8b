"""The shipped weights on the thirteenth reviewer set, which their training left out
(tests/detection/test_reviewer13.py). It was measured once, when the weights were
trained. The rules found 34 of the 50 sensitive messages and reported 2 of the 50
ordinary ones. With the classifier (ask: health, the trained threshold) the figures
were 39 and 3. The assertions are those figures, with no margin."""

from __future__ import annotations

from pathlib import Path

from postveil.classifier.client import SecondOpinion
from postveil.config.classifier import ClassifierSection
from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from tests.classifier.conftest import RunningClassifier
from tests.detection.corpus_gen import generate
from tests.detection.labelled_sets import load_labels

REVIEWER13 = Path(__file__).resolve().parents[1] / "detection" / "reviewer13"


def test_classifier_on_the_held_out_set(classifierd: RunningClassifier) -> None:
    labels = load_labels(REVIEWER13)
    detector = Detector(DetectionSection())
    second_opinion = SecondOpinion(
        ClassifierSection(enabled=True, socket=classifierd.socket, timeout="30s"), detector
    )
    found: list[str] = []
    false_positives: list[str] = []
    for name, label in sorted(labels.items()):
        verdict, texts = detector.scan_message_texts((REVIEWER13 / name).read_bytes())
        if second_opinion.review(verdict, texts).sensitive:
            (found if label["sensitive"] else false_positives).append(name)

    assert len(found) >= 39, found
    assert len(false_positives) <= 3, false_positives


def test_classifier_on_the_corpus(classifierd: RunningClassifier) -> None:
    # The generated corpus's 300 ordinary messages include providers' directory
    # updates (a clinic, an NPI, "referrals"), which the model reports when asked.
    # With ask: health they are not sent, and the corpus keeps its figures.
    detector = Detector(DetectionSection())
    second_opinion = SecondOpinion(
        ClassifierSection(enabled=True, socket=classifierd.socket, timeout="30s"), detector
    )
    missed: list[str] = []
    false_positives: list[str] = []
    for name, raw, meta in generate():
        verdict, texts = detector.scan_message_texts(raw)
        sensitive = second_opinion.review(verdict, texts).sensitive
        if meta["sensitive"] and not sensitive:
            missed.append(name)
        elif sensitive and not meta["sensitive"]:
            false_positives.append(name)

    assert missed == []
    assert false_positives == []


def test_classifier_adds_nothing_on_ordinary_health_mail(classifierd: RunningClassifier) -> None:
    # tests/detection/adversarial6: 40 ordinary messages written to make the model
    # fire. Before veterinary mail was kept from the model it reported three vets'
    # notes about named animals; now it adds none to the rules' 7.
    folder = REVIEWER13.parent / "adversarial6"
    labels = load_labels(folder)
    detector = Detector(DetectionSection())
    second_opinion = SecondOpinion(
        ClassifierSection(enabled=True, socket=classifierd.socket, timeout="30s"), detector
    )
    added = []
    for name in sorted(labels):
        verdict, texts = detector.scan_message_texts((folder / name).read_bytes())
        if second_opinion.review(verdict, texts).sensitive and not verdict.sensitive:
            added.append(name)

    assert added == []
