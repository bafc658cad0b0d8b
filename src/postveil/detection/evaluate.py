"""Measure the detector on a labelled corpus: precision, recall, per-category table.

    python -m postveil.detection.evaluate DIR [--config PATH]

DIR contains ``*.eml`` files and ``labels.json`` mapping each file name to
``{"sensitive": bool, "categories": [...]}`` (the format tests/detection/corpus_gen.py
writes). ``categories`` is optional, and other keys (such as a ``why`` note) are
ignored. The per-category table compares, per message, whether a category was
labelled with whether the detector reported it. Context-only categories
(``treatment``, ``care_setting``, ``procedure``, ``clinical_context``) are left out of
it because the corpus does not label them, and the whole table is left out when no
message has ``categories``. Output names files and categories, never content.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from postveil.detection.categories import ALL_CATEGORIES

UNLABELLED_CATEGORIES = frozenset({"treatment", "care_setting", "procedure", "clinical_context"})


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, expected: bool, detected: bool) -> None:
        if expected and detected:
            self.tp += 1
        elif detected:
            self.fp += 1
        elif expected:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class Evaluation:
    messages: Counts = field(default_factory=Counts)
    categories: dict[str, Counts] = field(default_factory=dict)
    false_negatives: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)


def evaluate(
    labels: Mapping[str, Mapping[str, object]],
    verdict_of: Callable[[str], tuple[bool, Mapping[str, int]]],
) -> Evaluation:
    """Compare ``verdict_of(name) -> (sensitive, categories)`` with the labels."""
    result = Evaluation()
    category_labels = any("categories" in label for label in labels.values())
    for name in sorted(labels):
        label = labels[name]
        expected = bool(label["sensitive"])
        sensitive, categories = verdict_of(name)
        result.messages.add(expected, sensitive)
        if expected and not sensitive:
            result.false_negatives.append(name)
        if sensitive and not expected:
            result.false_positives.append(name)
        expected_categories = set(label.get("categories", ()))  # type: ignore[call-overload]
        detected_categories = {category for category, count in categories.items() if count > 0}
        if not category_labels:
            continue
        for category in (expected_categories | detected_categories) - UNLABELLED_CATEGORIES:
            result.categories.setdefault(category, Counts())
    for name in sorted(labels):
        label = labels[name]
        _, categories = verdict_of(name)
        expected_categories = set(label.get("categories", ()))  # type: ignore[call-overload]
        for category, counts in result.categories.items():
            counts.add(category in expected_categories, categories.get(category, 0) > 0)
    return result


def format_report(result: Evaluation) -> str:
    m = result.messages
    lines = [
        f"messages: {m.tp + m.fp + m.fn + m.tn}  sensitive labelled: {m.tp + m.fn}",
        f"precision: {m.precision:.4f}  recall: {m.recall:.4f}",
        f"confusion: TP {m.tp}  FP {m.fp}  FN {m.fn}  TN {m.tn}",
    ]
    if result.categories:
        lines += [
            "",
            f"{'category':<18} {'TP':>5} {'FP':>5} {'FN':>5} {'TN':>5} {'precision':>10} {'recall':>8}",
        ]
    for category in sorted(result.categories):
        c = result.categories[category]
        lines.append(
            f"{category:<18} {c.tp:>5} {c.fp:>5} {c.fn:>5} {c.tn:>5} {c.precision:>10.3f} {c.recall:>8.3f}"
        )
    if result.false_negatives:
        lines += ["", "false negatives:"] + [f"  {name}" for name in result.false_negatives]
    if result.false_positives:
        lines += ["", "false positives:"] + [f"  {name}" for name in result.false_positives]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m postveil.detection.evaluate",
        description="Print precision, recall and a per-category confusion table for a labelled corpus.",
    )
    parser.add_argument("directory", type=Path, help="directory with *.eml files and labels.json")
    parser.add_argument(
        "--config", help="postveil configuration file whose detection section to use"
    )
    args = parser.parse_args(argv)

    from postveil.cli.scan_cmd import build_detector
    from postveil.errors import ConfigError

    try:
        detector = build_detector(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    labels_path = args.directory / "labels.json"
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{labels_path}: cannot read labels: {exc}", file=sys.stderr)
        return 1
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((args.directory / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    unknown = {c for _, cats in verdicts.values() for c in cats} - ALL_CATEGORIES
    result = evaluate(labels, verdicts.__getitem__)
    print(format_report(result))
    if unknown:
        print(f"\ncustom categories reported: {', '.join(sorted(unknown))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
