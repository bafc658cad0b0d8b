"""The ``detection`` section: what counts as PHI and how hard the scanner looks."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from postveil.config.types import Section, Size

IdentifierKind = Literal["high_risk", "patient_identifier", "health"]


class CustomIdentifier(Section):
    """An organisation-specific identifier, such as the local medical record number format."""

    name: str
    """Category name reported in verdicts and audit records, e.g. ``mrn``. Lower case,
    letters, digits and underscores."""

    pattern: str
    """Python regular expression matching the identifier itself (no context). It is
    matched case-sensitively, and only where the text before and after it is not a
    letter or digit."""

    kind: IdentifierKind = "patient_identifier"
    """``high_risk`` makes a message sensitive on its own; ``patient_identifier`` needs
    health information in the same message; ``health`` counts as health information."""

    keywords: list[str] = []
    """If not empty, one of these words must appear (whole word, any case) within
    ``context_window`` characters before the match."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if re.fullmatch(r"[a-z][a-z0-9_]{0,39}", value) is None:
            raise ValueError(
                f"invalid identifier name {value!r}: expected lower-case letters, digits "
                "and underscores, starting with a letter"
            )
        return value

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        if compiled.fullmatch("") is not None:
            raise ValueError(f"invalid pattern {value!r}: it matches the empty string")
        return value


class DetectionSection(Section):
    """Rules, weights and limits of the PHI detector (see docs/detection.md)."""

    identifier_threshold: float = Field(default=1.0, gt=0)
    """Sum of patient-identifier weights needed for the identifier-with-health rule."""

    health_threshold: float = Field(default=1.0, gt=0)
    """Sum of health-information weights needed for the identifier-with-health rule."""

    recipient_health_threshold: float = Field(default=1.0, gt=0)
    """Sum of weights of phrases that tell the recipient about their own health
    ("your lab results are ready") needed for the recipient-health rule."""

    weights: dict[str, float] = {}
    """Per-category weight overrides, e.g. ``{account_number: 0.5}``. A category whose
    weight is 0 is still reported but never makes a message sensitive. Unknown
    category names are rejected unless a custom identifier defines them."""

    custom_identifiers: list[CustomIdentifier] = []
    """Organisation-specific identifier formats."""

    extra_keywords: dict[str, list[str]] = {}
    """Words added to a built-in keyword group or health category, e.g.
    ``{mrn: ["unit number"], medication: ["tirzepatide"]}``."""

    context_window: int = Field(default=60, ge=10, le=400)
    """Characters before an identifier searched for its keyword (for example "SSN"
    before nine bare digits)."""

    max_part_size: Size = 10_000_000
    """Decoded bytes of one body part that are scanned; the rest of a longer part is
    not scanned and the part is reported as unscanned."""

    max_attachment_size: Size = 25_000_000
    """Attachments (PDF, DOCX, XLSX) larger than this, and DOCX or XLSX files that would
    decompress to more than four times this, are not opened. They are reported as
    unscanned."""

    max_parts: int = Field(default=500, ge=1)
    """MIME parts examined per message; parts beyond this are reported as unscanned."""

    max_depth: int = Field(default=10, ge=1)
    """Nesting depth of multipart and message/rfc822 parts that is followed."""

    treat_unscanned_as_sensitive: bool = True
    """Whether a message with any part that could not be fully scanned (encrypted,
    unsupported type, too large, unparseable) is treated as sensitive. True fails
    closed."""

    @model_validator(mode="after")
    def _check_names(self) -> DetectionSection:
        # Imported here because the detection package imports this module.
        from postveil.detection.categories import ALL_CATEGORIES

        custom = {item.name for item in self.custom_identifiers}
        for name in self.weights:
            if name not in ALL_CATEGORIES and name not in custom:
                raise ValueError(
                    f"weights: unknown category {name!r}; expected one of "
                    f"{', '.join(sorted(ALL_CATEGORIES | custom))}"
                )
        return self

    @field_validator("extra_keywords")
    @classmethod
    def _check_extra_keywords(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # Imported here because the detection package imports this module.
        from postveil.detection.categories import KEYWORD_GROUPS

        for name, words in value.items():
            if name not in KEYWORD_GROUPS:
                raise ValueError(
                    f"unknown group {name!r}; expected one of {', '.join(sorted(KEYWORD_GROUPS))}"
                )
            if any(not word.strip() for word in words):
                raise ValueError(f"group {name!r} has an empty keyword, which would match nothing")
        return value
