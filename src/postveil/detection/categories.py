"""Finding categories, the class each belongs to, and their default weights."""

from __future__ import annotations

HIGH_RISK = frozenset({"ssn", "mbi", "payment_card"})
"""Identifiers that make a message sensitive on their own."""

PATIENT_IDENTIFIERS = frozenset(
    {
        "mrn",
        "health_number",
        "member_id",
        "account_number",
        "date_of_birth",
        "patient_name",
        "drivers_license",
        "phone",
        "address",
        "iban",
    }
)
"""Identifiers that make a message sensitive together with health information."""

HEALTH = frozenset(
    {
        "diagnosis_code",
        "condition",
        "procedure_code",
        "procedure",
        "medication",
        "ndc",
        "lab_result",
        "treatment",
        "clinician_id",
        "care_setting",
    }
)
"""Health information: about a person only when an identifier or the recipient is named."""

RECIPIENT = frozenset({"recipient_health"})
"""Phrases that tell the recipient about their own health."""

CLINICAL_CONTEXT = frozenset({"clinical_context"})
"""Clinical shorthand and measurements ("hx of", "10 mg daily", "124 mmol/L"). They add
no weight to any rule. The scanner uses them to decide whether a name written with an
honorific, or a name in the Subject, belongs to a patient."""

ALL_CATEGORIES = HIGH_RISK | PATIENT_IDENTIFIERS | HEALTH | RECIPIENT | CLINICAL_CONTEXT

DEFAULT_WEIGHTS: dict[str, float] = {
    "ssn": 1.0,
    "mbi": 1.0,
    "payment_card": 1.0,
    "mrn": 1.0,
    "health_number": 1.0,
    "member_id": 1.0,
    "account_number": 1.0,
    "date_of_birth": 1.0,
    "patient_name": 1.0,
    "drivers_license": 1.0,
    "phone": 0.5,
    "address": 0.5,
    "iban": 0.5,
    "diagnosis_code": 1.0,
    "condition": 1.0,
    "procedure_code": 1.0,
    "procedure": 1.0,
    "medication": 1.0,
    "ndc": 1.0,
    "lab_result": 1.0,
    # Treatment words ("referral", "prescribed") and clinician ids (NPI, DEA) are
    # common in mail between providers that names no patient, so one alone is not enough.
    "treatment": 0.5,
    "clinician_id": 0.5,
    # A clinic or pharmacy name says only where care happens. It adds weight to a
    # recipient-health phrase but not to a patient identifier.
    "care_setting": 0.0,
    "recipient_health": 1.0,
    "clinical_context": 0.0,
}

KEYWORD_GROUPS = frozenset(
    {
        "ssn",
        "card",
        "medicare",
        "npi",
        "dea",
        "ndc",
        "procedure_code",
        "diagnosis_code",
        "date_of_birth",
        "mrn",
        "member_id",
        "account_number",
        "drivers_license",
        "phone",
        "address",
        "patient",
        "recipient_anchor",
        "recipient_key",
        "recipient_other_key",
        "room_cue",
        "nhs_number",
        "medicare_card",
        "health_card",
        "third_person",
        "veterinary",
        "tied_condition",
        "tied_medication",
        "condition",
        "medication",
        "procedure",
        "lab_result",
        "treatment",
        "care_setting",
        "clinical_cue",
        "name_cue",
        "name_cue_weak",
        "name_cue_after",
        "name_cue_after_weak",
        "lab_test",
        "lab_test_unit",
        "lab_unit",
    }
)
"""Names of the keyword lists in data/context.yaml and data/health.yaml."""
