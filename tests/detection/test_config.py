"""The ``detection`` configuration section and how the detector applies it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from postveil.config import parse_config
from postveil.config.detection import CustomIdentifier, DetectionSection
from postveil.detection import Detector
from postveil.errors import ConfigError


def test_defaults_are_valid() -> None:
    section = DetectionSection()
    assert section.treat_unscanned_as_sensitive is True
    assert section.max_part_size == 10_000_000


def test_sizes_parse_units() -> None:
    config = parse_config(b"detection:\n  max_part_size: 2MB\n  max_attachment_size: 1KiB\n")
    assert config.detection.max_part_size == 2_000_000
    assert config.detection.max_attachment_size == 1024


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (b"detection:\n  weights: {nope: 1}\n", "unknown category 'nope'"),
        (b"detection:\n  extra_keywords: {nope: [x]}\n", "unknown group 'nope'"),
        (b"detection:\n  extra_keywords: {condition: [x, '']}\n", "empty keyword"),
        (
            b"detection:\n  extra_keywords: {condition: [x, 42]}\n",
            'write it in quotes: "42"',
        ),
        (b"detection:\n  bogus: 1\n", "unknown key"),
        (
            b"detection:\n  custom_identifiers:\n    - {name: mrn2, pattern: '(['}\n",
            "invalid regular expression",
        ),
        (
            b"detection:\n  custom_identifiers:\n    - {name: mrn2, pattern: 'x*'}\n",
            "matches the empty string",
        ),
        (
            b"detection:\n  custom_identifiers:\n    - {name: Bad Name, pattern: 'x'}\n",
            "invalid identifier name",
        ),
        (b"detection:\n  identifier_threshold: 0\n", "greater than 0"),
    ],
)
def test_invalid_sections(yaml_text: bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml_text)
    assert expected in str(info.value)


def test_custom_identifier_with_keyword() -> None:
    section = DetectionSection(
        custom_identifiers=[
            CustomIdentifier(name="unit_number", pattern=r"U[0-9]{6}", keywords=["unit number"])
        ]
    )
    detector = Detector(section)
    with_keyword = detector.scan_text("Unit number U123456 has asthma")
    without_keyword = detector.scan_text("Shelf U123456 holds asthma leaflets")
    assert with_keyword.categories.get("unit_number") == 1
    assert with_keyword.sensitive
    assert "unit_number" not in without_keyword.categories


def test_custom_weight_can_silence_a_category() -> None:
    detector = Detector(DetectionSection(weights={"account_number": 0.0}))
    verdict = detector.scan_text("Patient account number 29486628, seen for asthma")
    assert verdict.categories.get("account_number") == 1
    assert not verdict.sensitive


def test_extra_keywords_extend_groups() -> None:
    detector = Detector(
        DetectionSection(extra_keywords={"medication": ["tirzepatide"], "mrn": ["unit no"]})
    )
    verdict = detector.scan_text("Unit no 7781234 started tirzepatide")
    assert verdict.categories.get("mrn") == 1
    assert verdict.categories.get("medication") == 1
    assert verdict.sensitive


def test_section_is_frozen() -> None:
    section = DetectionSection()
    with pytest.raises(ValidationError):
        section.context_window = 5  # type: ignore[misc]
