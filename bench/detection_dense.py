"""Scan time of texts made of one shape repeated, the worst case for a scanner step.

Each text is about one megabyte of one shape, repeated. Each shape makes one step of
the detector run at every repetition. Examples: a health word after "your" with a
date, a third person's health after a name, "she is on" before a drug. A step
whose cost grows faster than the text shows here as seconds a megabyte far above the
others. One process, one core, the built-in configuration.

    .venv/bin/python bench/detection_dense.py [--megabytes 1]
"""

from __future__ import annotations

import argparse
import time

from postveil.config.detection import DetectionSection
from postveil.detection import Detector

SHAPES = {
    "health word after your, with a date": "Your metformin runs out on Friday. ",
    "your with modifiers": "your next next next next next next next next next metformin ",
    "third person after a name": "Harold Ferris went home. He had his COPD flare and his asthma.\n",
    "third person, no name": "she is on metformin, ",
    "possessive health words": "his diabetes ",
    "booking without the care word": "You're booked with Dr. Lee on Monday for your ",
    "lab value before a product word": "INR 50 test strips ",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1.0, help="size of each text (at most 20)")
    args = parser.parse_args()
    if not 0 < args.megabytes <= 20:
        parser.error("--megabytes must be more than 0 and at most 20")
    detector = Detector(DetectionSection())
    size = int(args.megabytes * 1_000_000)
    print("| shape | MB | seconds | s/MB | verdict |")
    print("|---|---|---|---|---|")
    for name, piece in SHAPES.items():
        text = piece * (size // len(piece) + 1)
        started = time.perf_counter()
        verdict = detector.scan_text(text)
        elapsed = time.perf_counter() - started
        megabytes = len(text) / 1e6
        print(f"| {name} | {megabytes:.2f} | {elapsed:.2f} | {elapsed / megabytes:.2f} | {verdict.rule} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
