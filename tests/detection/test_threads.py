"""One detector shared by several threads gives the same verdicts as one thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from postveil.detection import Detector

TEXTS = [
    "SSN 536-22-1234",
    "Patient: Maria Garcia, DOB 03/14/1962, asthma",
    "Order ORD-2026-118273 shipped",
    "Your lab results are ready",
    "CPT 99213, Springfield, IL 62704",
] * 40


def test_concurrent_scans_match_serial(detector: Detector) -> None:
    serial = [detector.scan_text(text) for text in TEXTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(detector.scan_text, TEXTS))
    assert parallel == serial
