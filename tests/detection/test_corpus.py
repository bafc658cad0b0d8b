"""The labelled corpus: generated from a seed at test time, then measured.

The corpus is generated rather than stored because 600 messages with attachments
would add megabytes to the repository, and generated files could drift from the
generator. Generation takes under a second and the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from postveil.cli.main import main as cli_main
from postveil.detection import Detector
from postveil.detection.evaluate import evaluate
from postveil.detection.evaluate import main as evaluate_main
from tests import planted
from tests.detection.corpus_gen import generate, write_corpus

SEED = 2026
COUNT = 600


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("corpus")
    planted.mark_message_store(directory, "generated PHI corpus")
    write_corpus(directory, SEED, COUNT)
    return directory


@pytest.fixture(scope="module")
def labels(corpus_dir: Path) -> dict[str, dict[str, object]]:
    return json.loads((corpus_dir / "labels.json").read_text())


def test_corpus_is_reproducible() -> None:
    first = [hashlib.sha256(raw).hexdigest() for _, raw, _ in generate(SEED, 40)]
    second = [hashlib.sha256(raw).hexdigest() for _, raw, _ in generate(SEED, 40)]
    assert first == second


def test_corpus_size_and_balance(labels: dict[str, dict[str, object]]) -> None:
    assert len(labels) >= 500
    sensitive = sum(1 for label in labels.values() if label["sensitive"])
    assert 0.4 <= sensitive / len(labels) <= 0.6


def test_corpus_precision_and_recall(
    detector: Detector, corpus_dir: Path, labels: dict[str, dict[str, object]]
) -> None:
    verdicts = {}
    for name in labels:
        verdict = detector.scan_message((corpus_dir / name).read_bytes())
        verdicts[name] = (verdict.sensitive, verdict.categories)
    result = evaluate(labels, verdicts.__getitem__)
    assert result.messages.recall >= 0.99, result.false_negatives
    assert result.messages.precision >= 0.98, result.false_positives


def test_evaluate_command_prints_figures(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert evaluate_main([str(corpus_dir)]) == 0
    output = capsys.readouterr().out
    assert "precision:" in output
    assert "recall:" in output
    assert "payment_card" in output


def test_scan_json_over_corpus(
    corpus_dir: Path, labels: dict[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    names = sorted(labels)[:60]
    assert cli_main(["scan", "--json", *[str(corpus_dir / name) for name in names]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        record = json.loads(line)
        assert list(record) == [
            "file",
            "sensitive",
            "score",
            "rule",
            "categories",
            "unscanned_parts",
        ]
        assert record["sensitive"] == labels[name]["sensitive"]
