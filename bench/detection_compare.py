"""Compare the scanner's speed with that of another checkout, in one process.

    mkdir -p /tmp/base && git archive main src | tar -x -C /tmp/base
    .venv/bin/python bench/detection_compare.py /tmp/base/src [--rounds 25]

On a shared machine two runs of bench/detection_bench.py minutes apart can differ by
more than the change being measured. This script loads both versions of the
``postveil`` package into one process (the baseline first, then this checkout's) and
times ``Detector.find`` over the same texts in alternating rounds. It counts CPU time
of the process (``time.process_time``), so time spent waiting for a core is left out,
and keeps the fastest round of each. The texts are those of bench/detection_bench.py:
the generated corpus (seed 2026, 600 messages) and 0.9 MB of business prose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "detection"))

from detection_bench import load_corpus, prose_text  # noqa: E402


def load_detector(source: Path) -> Any:
    """Import ``postveil`` from ``source`` (a ``src`` directory) and build a detector
    with the default configuration. Earlier imports of ``postveil`` are dropped from
    ``sys.modules`` first; objects built from them keep working."""
    for name in list(sys.modules):
        if name == "postveil" or name.startswith("postveil."):
            del sys.modules[name]
    sys.path.insert(0, str(source))
    try:
        from postveil.cli.scan_cmd import build_detector

        return build_detector(None)
    finally:
        sys.path.remove(str(source))


def cpu_seconds(detector: Any, texts: list[str]) -> float:
    start = time.process_time()
    for text in texts:
        detector.find(text)
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", type=Path, help="src directory of the baseline checkout")
    parser.add_argument("--rounds", type=int, default=25, help="alternating rounds (default 25)")
    args = parser.parse_args(argv)

    corpus = [text for _, texts in load_corpus(2026, 600) for text in texts]
    prose = [prose_text(900_000)]
    detectors = {
        "baseline": load_detector(args.baseline.resolve()),
        "this checkout": load_detector(REPO / "src"),
    }
    # One untimed pass loads the ICD-10-CM list and warms caches for both.
    for detector in detectors.values():
        cpu_seconds(detector, corpus)

    best = {name: {"corpus": float("inf"), "prose": float("inf")} for name in detectors}
    order = list(detectors)
    for round_number in range(args.rounds):
        # Alternate who goes first, so neither always runs right after the other.
        for name in order if round_number % 2 == 0 else reversed(order):
            best[name]["corpus"] = min(best[name]["corpus"], cpu_seconds(detectors[name], corpus))
            if round_number % 4 == 0:
                best[name]["prose"] = min(best[name]["prose"], cpu_seconds(detectors[name], prose))

    corpus_mb = sum(len(text.encode("utf-8")) for text in corpus) / 1e6
    prose_mb = len(prose[0].encode("utf-8")) / 1e6
    print(f"corpus: {corpus_mb:.2f} MB, prose: {prose_mb:.2f} MB, {args.rounds} rounds")
    for name in detectors:
        print(
            f"{name:<14} corpus {corpus_mb / best[name]['corpus']:6.2f} MB/s"
            f"   prose {prose_mb / best[name]['prose']:6.2f} MB/s"
        )
    for text_set in ("corpus", "prose"):
        change = best["this checkout"][text_set] / best["baseline"][text_set] - 1
        print(f"{text_set}: this checkout takes {change * 100:+.1f}% CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
