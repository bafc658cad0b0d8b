from __future__ import annotations

import pytest

from postveil.config.detection import DetectionSection
from postveil.detection import Detector


@pytest.fixture(scope="session")
def detector() -> Detector:
    return Detector(DetectionSection())
