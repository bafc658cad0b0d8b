"""PHI detection: decide whether a message carries protected health information.

Public API, used by postveil-milter and ``postveil scan``::

    detector = Detector(config.detection)      # once per configuration
    verdict = detector.scan_message(raw_bytes)  # or detector.scan_text(text)
    verdict.sensitive, verdict.score, verdict.rule, verdict.categories, verdict.unscanned_parts

``Detector`` does no I/O after construction (it reads its keyword lists from package
data once) and is safe to call from several threads at once: it keeps no state
between calls. ``scan_message`` never raises on malformed MIME; what it could not
read is listed in ``unscanned_parts``. A ``Verdict`` holds categories and counts
only, never matched values, so it may be logged and audited as it is.
"""

from __future__ import annotations

from postveil.detection.engine import Detector, Verdict
from postveil.detection.scanner import Finding

__all__ = ["Detector", "Finding", "Verdict"]
