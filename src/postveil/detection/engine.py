"""``Detector`` and ``Verdict``: the configured scanner and its result."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from postveil.config.detection import DetectionSection
from postveil.detection.categories import DEFAULT_WEIGHTS
from postveil.detection.extract import Limits, extract_message
from postveil.detection.keywords import KeywordMatcher, load_builtin_keywords, lower_same_length
from postveil.detection.people import HEALTH_EVIDENCE, subject_names_person
from postveil.detection.rules import RuleSettings, decide
from postveil.detection.scanner import CustomRule, Finding, TextScanner


@dataclass(frozen=True)
class Verdict:
    """Whether a message is sensitive, and why. Holds no matched values."""

    sensitive: bool
    score: float
    """Strength of the strongest rule; 1.0 or more means the rule fired."""

    rule: str
    """Name of the rule that fired, or ``none``: ``high_risk_identifier``,
    ``identifier_with_health``, ``recipient_health``, ``unscanned_part``, or
    ``classifier`` (postveil.classifier)."""

    categories: dict[str, int] = field(default_factory=dict)
    """Finding category -> number of findings."""

    unscanned_parts: list[str] = field(default_factory=list)
    """Parts not fully scanned, described by number, content type and reason."""

    classifier: float | None = None
    """The probability postveil-classifierd gave, when it was asked (rule
    ``classifier`` when it reached the threshold); None when it was not asked."""

    classifier_error: str | None = None
    """Why postveil-classifierd gave no probability, when the rules' verdict was kept
    without it (``classifier.on_failure: rules``)."""


class Detector:
    """The PHI detector for one configuration. Thread-safe; build once, call often."""

    def __init__(self, section: DetectionSection) -> None:
        self.section = section
        groups = load_builtin_keywords()
        for group, words in section.extra_keywords.items():
            groups.setdefault(group, []).extend(words)
        custom_rules = tuple(
            CustomRule(
                name=item.name,
                pattern=re.compile(item.pattern),
                keywords=KeywordMatcher({"keyword": item.keywords}) if item.keywords else None,
            )
            for item in section.custom_identifiers
        )
        self._keywords = KeywordMatcher(groups)
        self._scanner = TextScanner(self._keywords, custom_rules, section.context_window)
        # The ICD-10-CM code list loads at the first code-like token (about 0.15 s);
        # validators.load_icd10cm() loads it earlier, at daemon start.
        weights = dict(DEFAULT_WEIGHTS)
        weights.update(section.weights)
        self._settings = RuleSettings(
            weights=weights,
            kinds={item.name: item.kind for item in section.custom_identifiers},
            identifier_threshold=section.identifier_threshold,
            health_threshold=section.health_threshold,
            recipient_health_threshold=section.recipient_health_threshold,
        )
        self._limits = Limits(
            max_part_size=section.max_part_size,
            max_attachment_size=section.max_attachment_size,
            max_parts=section.max_parts,
            max_depth=section.max_depth,
        )

    def find(self, text: str) -> list[Finding]:
        """Return the raw findings in ``text`` (for tests and evaluation)."""
        return self._scanner.scan(text)

    def mentions(self, group: str, texts: list[str]) -> bool:
        """Return whether a text has a keyword of ``group``, the configuration's
        ``extra_keywords`` included (a second pass over the texts)."""
        return any(group in self._keywords.search(lower_same_length(text)).spans for text in texts)

    def scan_text(self, text: str) -> Verdict:
        """Scan plain text, such as a message body already decoded."""
        return self._verdict([text], [])

    def scan_message(self, raw: bytes) -> Verdict:
        """Scan a whole RFC 5322 message (headers and body as received)."""
        return self.scan_message_texts(raw)[0]

    def scan_message_texts(self, raw: bytes) -> tuple[Verdict, list[str]]:
        """Scan a whole message; return the verdict and the texts that were scanned
        (Subject, text parts, attachments' text), for the classifier."""
        extraction = extract_message(raw, self._limits)
        subjects = [extraction.texts[index] for index in extraction.subjects]
        return self._verdict(extraction.texts, extraction.unscanned, subjects), extraction.texts

    def _verdict(
        self, texts: list[str], unscanned: list[str], subjects: list[str] | None = None
    ) -> Verdict:
        counts: Counter[str] = Counter()
        strong_weight = weak_weight = 0.0
        # A phrase repeated word for word (a Subject that echoes the body) adds no
        # evidence, so each distinct phrase text counts once.
        phrases_seen: set[str] = set()
        for index, text in enumerate(texts):
            findings, reasons = self._scanner.scan_checked(text)
            for reason in reasons:
                unscanned = [*unscanned, f"text {index + 1} of {len(texts)}: {reason}"]
            for finding in findings:
                counts[finding.category] += 1
                if finding.category == "recipient_health":
                    phrase = " ".join(text[finding.start : finding.end].lower().split())
                    if phrase in phrases_seen:
                        continue
                    phrases_seen.add(phrase)
                    if finding.confidence >= 1.0:
                        strong_weight += finding.confidence
                    else:
                        weak_weight += finding.confidence
        # Weak phrases ("your appointment is confirmed for Tuesday") are written by
        # installers and salons too, and two of them about one appointment are no more
        # evidence than one. So weak phrases together weigh at most one weak phrase, and
        # a health word has to add the other half.
        phrase_weight = strong_weight + min(weak_weight, _WEAK_PHRASES_MAX)
        if subjects and _clinical_body(counts) and any(map(subject_names_person, subjects)):
            counts["patient_name"] += 1
        decision = decide(
            counts,
            self._settings,
            phrase_weight=phrase_weight,
            unscanned=bool(unscanned),
            treat_unscanned_as_sensitive=self.section.treat_unscanned_as_sensitive,
        )
        return Verdict(
            sensitive=decision.sensitive,
            score=decision.score,
            rule=decision.rule,
            categories=dict(sorted(counts.items())),
            unscanned_parts=list(unscanned),
        )


_WEAK_PHRASES_MAX = 0.5


def _clinical_body(counts: Counter[str]) -> bool:
    """Return whether the findings read as notes about someone's care: clinical
    shorthand or a clinical unit, or two kinds of health information ("biopsy" and
    "carcinoma"). A Subject that is a name ("Re: John Smith") then names the patient.
    A recruiter's "Re: Jane Doe - RN candidate" over "oncology experience" does not
    qualify."""
    if counts.get("clinical_context", 0) > 0:
        return True
    kinds = sum(1 for category in HEALTH_EVIDENCE if counts.get(category, 0) > 0)
    return kinds >= 2
