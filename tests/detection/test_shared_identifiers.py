"""Account, member and licence numbers count as a patient's only where the message
shows someone's care (rules.py, categories.SHARED_IDENTIFIERS).

Suppliers' statements, gym cards, building insurance and drivers' records print the
same labels as patient bills. Each case is a short text; the ordinary ones come from
the shapes of tests/detection/adversarial2 and adversarial4.
"""

from __future__ import annotations

import pytest

from postveil.detection import Detector
from postveil.detection.categories import DEFAULT_WEIGHTS
from postveil.detection.rules import RuleSettings, decide

CASES = [
    # Ordinary: the health words are goods, a topic, a place or an animal's.
    (
        "supplier statement",
        "Your October statement:\n\nAcct. No.: 100-44712\n\n"
        "Invoice 22310: 20 boxes insulin pen needles, 5 boxes glucose test strips",
        False,
    ),
    (
        "order of goods owned by your",
        "Account No. 20417-31\nThank you for your order of insulin pen needles.",
        False,
    ),
    (
        "gym card and a talk",
        "Member ID 55012877 stays the same.\n\n"
        "This month: a free talk on high blood pressure and exercise.",
        False,
    ),
    (
        "building insurance",
        "Policy number BOP-2209417\nCovers: building contents, the x-ray equipment",
        False,
    ),
    (
        "courier's licence",
        "Driver Licence No.: D4471-902-33\nVan: SM-14\n\n"
        "He can take the insulin and vaccine boxes from Monday.",
        False,
    ),
    (
        "veterinary invoice",
        "Client account no. 44817\nPatient: Pepper (canine, 4 yrs)\n- Spay surgery $420.00\n"
        "- Gabapentin 100 mg x 10",
        False,
    ),
    (
        "flock visit",
        "Account No. 61244 (Hill Farm). Blood samples showed anaemia in the ewes.",
        False,
    ),
    (
        "patient gowns on an invoice",
        "Account number 7720-4419\n\nPatient gowns, 40\nSaline flush syringes, 10 boxes",
        False,
    ),
    # Sensitive: a word of a bill or record, a code, a person's own health word, or a
    # health word on the identifier's line.
    (
        "date of service",
        "Account number: 00371925\nDate of service: 09/29/2026\n\nPap smear",
        True,
    ),
    (
        "explanation of benefits",
        "Explanation of Benefits\nMember ID: EHP-55190274\n\nMRI lumbar spine",
        True,
    ),
    ("guarantor", "Guarantor: Denise Fenwick\nAccount number: 7003-448219\n\nCT head", True),
    (
        "insurance payment",
        "Your statement for the upper endoscopy is ready. After your insurance payment "
        "the balance is $412.60.\n\nAccount number: 0087723",
        True,
    ),
    (
        "owned health word",
        "I was charged twice for my mammogram on Oct 3.\n\nMy account number is 600441927.",
        True,
    ),
    ("pronoun owns the condition", "Acct 7730194.\n\nThe balance is from her kidney stone.", True),
    ("health word on the next line", "DL: OH K381-5520-9174\nDistal radius fracture", True),
    ("same sentence", "Member ID HX20044719 approved for rotator cuff repair.", True),
    ("billing code", "Account #: 20931847\n\nCPT 45385 colonoscopy with polypectomy", True),
    ("office visit", "Account number: LFM-0088213\n\nOffice visit, rapid strep test", True),
    (
        "patient responsibility",
        "Account #: 20931847\n\nColonoscopy $1,840.00\nPatient responsibility $547.75",
        True,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_shared_identifiers(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


@pytest.mark.parametrize("identifier", ["account_number", "member_id", "drivers_license"])
def test_shared_identifier_needs_care_evidence(identifier: str) -> None:
    settings = RuleSettings(weights=DEFAULT_WEIGHTS, kinds={})
    assert not decide({identifier: 1, "medication": 2}, settings).sensitive
    for evidence in ("care_record", "procedure_code", "clinical_context", "recipient_health"):
        assert decide({identifier: 1, "medication": 2, evidence: 1}, settings).sensitive


def test_other_identifiers_need_no_care_evidence() -> None:
    settings = RuleSettings(weights=DEFAULT_WEIGHTS, kinds={})
    assert decide({"mrn": 1, "medication": 1}, settings).sensitive
    # An organisation's own identifier (a custom category) counts as configured.
    custom = RuleSettings(weights=DEFAULT_WEIGHTS, kinds={"acme_mrn": "patient_identifier"})
    assert decide({"acme_mrn": 1, "condition": 1}, custom).sensitive
