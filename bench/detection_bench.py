"""Benchmark the PHI detector against Presidio's pattern recognizers on the same corpus.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/detection_bench.py [--seed 2026] [--count 600] [--repeat 5]

Both tools see the same texts, extracted from the generated corpus before timing
starts (so attachment parsing is excluded). Throughput is megabytes of UTF-8 text per
second on one core (one thread, no multiprocessing). The corpus is dense in numbers
and identifiers by design. A second figure is measured on 0.9 MB of ordinary business
prose (PROSE_PARAGRAPHS), where candidates that need Python code are rare. A third
figure times only the scanner's three C passes over the corpus texts (lower-casing,
the keyword automaton, the chain regex), which bounds what the Python code can reach.
Presidio runs its predefined pattern recognizers with a blank spaCy English pipeline
(no model download, so no named-entity recognizer and no lemmas for its context
words). A message counts as sensitive for Presidio when it finds an entity of a type
in PRESIDIO_SENSITIVE that scores at or above --presidio-threshold.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "detection"))

from corpus_gen import generate  # noqa: E402

from postveil.config.detection import DetectionSection  # noqa: E402
from postveil.detection import Detector  # noqa: E402
from postveil.detection.extract import extract_message  # noqa: E402
from postveil.detection.keywords import KeywordMatcher, load_builtin_keywords  # noqa: E402
from postveil.detection.scanner import _CHAIN  # noqa: E402

# The entity types that match what postveil treats as sensitive on its own (SSN and
# payment card; Presidio has no MBI recognizer). IBANs, DEA numbers (MEDICAL_LICENSE)
# and driver's licences are not PHI by themselves, so they do not count.
PRESIDIO_SENSITIVE = frozenset({"US_SSN", "CREDIT_CARD"})


PROSE_PARAGRAPHS = (
    "Thanks for the update on the quarterly report. The team will review the attached "
    "slides before the meeting on Tuesday and send comments by Friday.",
    "Please let me know if the budget figures changed since the last version; we need "
    "3 printed copies for the board and one for the auditors.",
    "The new office opens next month. Parking is in lot C and the visitor desk is on "
    "the second floor, next to the kitchen.",
    "Our newsletter this week covers the flu season, hand washing and why a good night "
    "of sleep matters for everyone on the team.",
    "Regards,\nSam Taylor\nOperations\nPhone: (312) 555-0142",
)


def prose_text(size: int) -> str:
    """Return about ``size`` characters of ordinary business prose with few numbers."""
    pieces: list[str] = []
    total = 0
    index = 0
    while total < size:
        paragraph = PROSE_PARAGRAPHS[index % len(PROSE_PARAGRAPHS)]
        pieces.append(paragraph)
        total += len(paragraph) + 2
        index += 1
    return "\n\n".join(pieces)


def time_prose(scan, text: str, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        scan(text)
        best = min(best, time.perf_counter() - start)
    return len(text.encode("utf-8")) / 1e6 / best


def load_corpus(seed: int, count: int) -> list[tuple[bool, list[str]]]:
    corpus = []
    for _, raw, label in generate(seed, count):
        corpus.append((bool(label["sensitive"]), extract_message(raw).texts))
    return corpus


def precision_recall(
    expected: list[bool], predicted: list[bool]
) -> tuple[float, float, int, int, int]:
    tp = sum(1 for e, p in zip(expected, predicted, strict=True) if e and p)
    fp = sum(1 for e, p in zip(expected, predicted, strict=True) if p and not e)
    fn = sum(1 for e, p in zip(expected, predicted, strict=True) if e and not p)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, tp, fp, fn


def bench_postveil(
    corpus: list[tuple[bool, list[str]]], total_mb: float, repeat: int
) -> dict[str, float]:
    detector = Detector(DetectionSection())
    texts = [text for _, texts in corpus for text in texts]
    detector.scan_text("warm up the ICD-10-CM code list E11.9")
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in texts:
            detector.find(text)
        best = min(best, time.perf_counter() - start)
    # The verdict per message, as the milter would compute it (counts all texts).
    predicted = []
    for _, message_texts in corpus:
        predicted.append(detector.scan_text("\n\n".join(message_texts)).sensitive)
    precision, recall, tp, fp, fn = precision_recall([s for s, _ in corpus], predicted)
    return {"seconds": best, "mb_per_s": total_mb / best, "precision": precision, "recall": recall,
            "tp": tp, "fp": fp, "fn": fn}  # fmt: skip


def time_c_passes(corpus: list[tuple[bool, list[str]]], total_mb: float, repeat: int) -> float:
    """Return the MB/s of the scanner's three C passes alone (str.lower, the keyword
    automaton, the chain regex), with no Python code per hit: a ceiling for the scanner."""
    search = KeywordMatcher(load_builtin_keywords()).search_text
    texts = [text for _, texts in corpus for text in texts]
    consume = deque(maxlen=0).extend
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in texts:
            first_digit = search(text.lower()).first_digit
            if first_digit >= 0:
                consume(_CHAIN.finditer(text, first_digit))
        best = min(best, time.perf_counter() - start)
    return total_mb / best


def build_presidio():  # type: ignore[no-untyped-def]
    import spacy
    from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankSpacyEngine(SpacyNlpEngine):
        """A spaCy engine on spacy.blank("en"): tokenizer only, nothing downloaded."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacyEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"])
    registry.recognizers = [r for r in registry.recognizers if isinstance(r, PatternRecognizer)]
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def bench_presidio(
    corpus: list[tuple[bool, list[str]]], total_mb: float, repeat: int, threshold: float
) -> dict[str, float]:
    analyzer = build_presidio()
    texts = [text for _, texts in corpus for text in texts]
    analyzer.analyze(text="warm up 123-45-6789", language="en")
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in texts:
            analyzer.analyze(text=text, language="en")
        best = min(best, time.perf_counter() - start)
    predicted = []
    for _, message_texts in corpus:
        results = analyzer.analyze(
            text="\n\n".join(message_texts), language="en", score_threshold=threshold
        )
        predicted.append(any(result.entity_type in PRESIDIO_SENSITIVE for result in results))
    precision, recall, tp, fp, fn = precision_recall([s for s, _ in corpus], predicted)
    return {"seconds": best, "mb_per_s": total_mb / best, "precision": precision, "recall": recall,
            "tp": tp, "fp": fp, "fn": fn}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed (default 2026)")
    parser.add_argument("--count", type=int, default=600, help="corpus messages (default 600)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed passes; the fastest counts (default 5)"
    )
    parser.add_argument(
        "--presidio-threshold",
        type=float,
        default=0.5,
        help="Presidio score threshold (default 0.5)",
    )
    parser.add_argument("--skip-presidio", action="store_true", help="measure postveil only")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.seed, args.count)
    total_bytes = sum(len(text.encode("utf-8")) for _, texts in corpus for text in texts)
    total_mb = total_bytes / 1e6
    print(f"corpus: {len(corpus)} messages, {total_mb:.2f} MB of extracted text")
    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    rows = [("postveil", bench_postveil(corpus, total_mb, args.repeat))]
    c_passes_rate = time_c_passes(corpus, total_mb, args.repeat)
    prose = prose_text(900_000)
    prose_rates = [("postveil", time_prose(Detector(DetectionSection()).find, prose, args.repeat))]
    if not args.skip_presidio:
        rows.append(
            (
                "presidio patterns",
                bench_presidio(corpus, total_mb, args.repeat, args.presidio_threshold),
            )
        )
        analyzer = build_presidio()
        prose_rates.append(
            (
                "presidio patterns",
                time_prose(lambda text: analyzer.analyze(text=text, language="en"), prose, 1),
            )
        )
    print(
        f"{'tool':<18} {'MB/s':>8} {'seconds':>8} {'precision':>10} {'recall':>8} {'TP':>5} {'FP':>5} {'FN':>5}"
    )
    for name, row in rows:
        print(f"{name:<18} {row['mb_per_s']:>8.2f} {row['seconds']:>8.3f} {row['precision']:>10.4f} "
              f"{row['recall']:>8.4f} {row['tp']:>5} {row['fp']:>5} {row['fn']:>5}")  # fmt: skip
    print(f"postveil C passes only (no Python per hit): {c_passes_rate:.2f} MB/s")
    print(f"\nprose (ordinary business text, {len(prose) / 1e6:.2f} MB, one string):")
    for name, rate in prose_rates:
        print(f"{name:<18} {rate:>8.2f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
