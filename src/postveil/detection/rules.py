"""The verdict: which rule, if any, makes a set of findings sensitive.

Rules, in the order in which they name the verdict:

``high_risk_identifier``
    any SSN, MBI, payment card or custom ``high_risk`` identifier.
``identifier_with_health``
    patient-identifier weight >= ``identifier_threshold`` and health-information
    weight >= ``health_threshold`` in the same message.
``recipient_health``
    weight of phrases telling the recipient about their own health, plus 0.5 when any
    health word (a clinic or pharmacy included) is present, >=
    ``recipient_health_threshold``. Without a phrase the rule never fires.
``unscanned_part``
    a part could not be fully scanned and ``treat_unscanned_as_sensitive`` is set.

Each rule's score is its weight sum divided by its threshold. For
``identifier_with_health`` it is the smaller of the two ratios. A score of 1.0 or
more fires the rule. The verdict names the first rule that fires, and its score is the
highest rule score, so it also shows how close a message that is not sensitive came.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from postveil.detection.categories import (
    CLINICAL_CONTEXT,
    HEALTH,
    HIGH_RISK,
    PATIENT_IDENTIFIERS,
    RECIPIENT,
)

# Repeats of one category add weight only up to this count, so that a newsletter that
# mentions "diabetes" twenty times weighs no more than one that mentions it three times.
_MAX_COUNTED = 3

# Weight a recipient phrase gains when the message also carries health information.
_HEALTH_BONUS = 0.5


@dataclass(frozen=True)
class RuleSettings:
    """Weights and thresholds, resolved from the configuration."""

    weights: Mapping[str, float]
    kinds: Mapping[str, str]
    identifier_threshold: float = 1.0
    health_threshold: float = 1.0
    recipient_health_threshold: float = 1.0


@dataclass(frozen=True)
class Decision:
    sensitive: bool
    score: float
    rule: str


def kind_of(category: str, kinds: Mapping[str, str]) -> str:
    """Return ``high_risk``, ``patient_identifier``, ``health``, ``recipient`` or
    ``context``."""
    if category in kinds:
        return kinds[category]
    if category in HIGH_RISK:
        return "high_risk"
    if category in PATIENT_IDENTIFIERS:
        return "patient_identifier"
    if category in HEALTH:
        return "health"
    if category in RECIPIENT:
        return "recipient"
    if category in CLINICAL_CONTEXT:
        return "context"
    raise KeyError(category)


def decide(
    counts: Mapping[str, int],
    settings: RuleSettings,
    *,
    phrase_weight: float = 0.0,
    unscanned: bool = False,
    treat_unscanned_as_sensitive: bool = True,
) -> Decision:
    """Apply the rules to category counts and return the decision.

    ``phrase_weight`` is the summed weight of the recipient-health phrases found: a
    strong phrase ("your lab results are ready") weighs 1.0, a weak one ("your test
    results are ready", which CI systems send too) 0.5.
    """
    sums = {"high_risk": 0.0, "patient_identifier": 0.0, "health": 0.0, "recipient": 0.0}
    health_present = False
    for category, count in counts.items():
        if count <= 0:
            continue
        kind = kind_of(category, settings.kinds)
        if kind == "context":
            # Clinical shorthand only steers how the scanner reads names; "w/ hx" in a
            # CI mail must not strengthen "your test results are ready".
            continue
        weight = settings.weights.get(category, 1.0)
        if kind == "recipient":
            sums[kind] += weight * phrase_weight
        else:
            sums[kind] += weight * min(count, _MAX_COUNTED)
        health_present = health_present or kind == "health"

    # A patient's name with clinical shorthand or a clinical measurement ("Pt: MARSH,
    # DELIA ... K+ 6.8 mmol/L") is about that patient's care, although the shorthand
    # weighs nothing elsewhere.
    if sums["health"] == 0 and counts.get("patient_name", 0) > 0:
        sums["health"] = float(min(counts.get("clinical_context", 0), _MAX_COUNTED))

    candidates: list[tuple[float, str]] = []
    if sums["high_risk"] > 0:
        candidates.append((max(1.0, sums["high_risk"]), "high_risk_identifier"))
    identifier_ratio = sums["patient_identifier"] / settings.identifier_threshold
    health_ratio = sums["health"] / settings.health_threshold
    candidates.append((min(identifier_ratio, health_ratio), "identifier_with_health"))
    if sums["recipient"] > 0:
        # Health words, care settings included, strengthen a recipient phrase but
        # never replace it.
        recipient_total = sums["recipient"] + (_HEALTH_BONUS if health_present else 0.0)
        candidates.append(
            (recipient_total / settings.recipient_health_threshold, "recipient_health")
        )
    if unscanned and treat_unscanned_as_sensitive:
        candidates.append((1.0, "unscanned_part"))

    score = round(max(item[0] for item in candidates), 3)
    # Candidates are in rule order, so the first that fires names the verdict: an SSN
    # is reported as high_risk_identifier even when identifiers with health weigh more.
    for rule_score, rule in candidates:
        if rule_score >= 1.0:
            return Decision(True, score, rule)
    return Decision(False, score, "none")
