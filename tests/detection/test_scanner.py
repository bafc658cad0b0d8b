"""What the scanner finds in plain text: identifiers in context and the traps around them."""

from __future__ import annotations

import pytest

from postveil.detection import Detector
from postveil.detection.keywords import MAX_HITS
from postveil.detection.scanner import MAX_FINDINGS, Finding, _make_finding

# (case id, text, categories that must be found, categories that must not be found)
FINDING_CASES = [
    ("ssn hyphenated", "SSN on the form: 536-22-1234.", {"ssn"}, set()),
    ("ssn hyphenated without keyword", "Her number is 536-22-1234 per the card.", {"ssn"}, set()),
    ("ssn bare with keyword", "social security number 536221234", {"ssn"}, set()),
    ("ssn bare without keyword", "Order reference 536221234 shipped", set(), {"ssn"}),
    ("ssn keyword after", "Her number 536221234 (SSN) is on file", {"ssn"}, set()),
    ("card keyword after", "Charge 4111111111111111, the Visa on file", {"payment_card"}, set()),
    ("zip before cpt keyword", "Springfield 62704 - CPT 99213", {"procedure_code"}, set()),
    ("ssn spaced needs keyword", "Conference ID 536 22 1234", set(), {"ssn"}),
    ("ssn spaced with keyword", "SSN: 536 22 1234", {"ssn"}, set()),
    ("ssn spaced after slang", "and her social is 536 22 1234.", {"ssn"}, set()),
    (
        "ssn spaced, keyword in the quoted request",
        "sorry, it's 536 22 1234.\n\n> Please send your social security number.",
        {"ssn"},
        set(),
    ),
    ("ssn spaced beside a social club", "Call 536 22 1234 for the social club.", set(), {"ssn"}),
    ("ssn dotted, keyword far away", "Ref 536.22.1234\n\n\nssn", set(), {"ssn"}),
    ("ssn 900 area", "SSN 900-12-3456 and 987-65-4321", set(), {"ssn"}),
    ("ssn woolworth sample", "The SSN 078-05-1120 is the classic sample.", set(), {"ssn"}),
    ("ssn inside longer number", "Part 1-536-22-1234-7 is on order", set(), {"ssn"}),
    ("ssn group 00", "SSN 536-00-1234", set(), {"ssn"}),
    ("mbi", "Medicare MBI 1EG4-TE5-MK73 on file", {"mbi"}, set()),
    ("mbi compact", "beneficiary 1EG4TE5MK73", {"mbi"}, set()),
    ("mbi inside token", "key X1EG4TE5MK73Y", set(), {"mbi"}),
    ("card grouped", "Visa 4111 1111 1111 1111 exp 01/29", {"payment_card"}, set()),
    (
        "card grouped without keyword",
        "Use 5555-5555-5555-4444 for the deposit",
        {"payment_card"},
        set(),
    ),
    ("card bare with keyword", "credit card 4111111111111111", {"payment_card"}, set()),
    ("card bare without keyword", "Tracking 4111111111111111", set(), {"payment_card"}),
    ("card luhn fails", "card number 4111 1111 1111 1112", set(), {"payment_card"}),
    ("card timestamp passes luhn", "card event logged at 1700000000004", set(), {"payment_card"}),
    ("card run inside longer number", "card 41111111111111110000", set(), {"payment_card"}),
    ("card grouped inside longer", "card 4111 1111 1111 1111 2222 3333", set(), {"payment_card"}),
    ("card then expiry", "Card: 4111 1111 1111 1111 05/28", {"payment_card"}, set()),
    ("card then security code", "card 4111 1111 1111 1111 123", {"payment_card"}, set()),
    ("card of 19 digits", "card 6011 0000 0000 0000 001", {"payment_card"}, set()),
    ("card bare then cvv", "4111111111111111 and the cvv is 312", {"payment_card"}, set()),
    (
        "card bare then code on back",
        "its 4111111111111111 11/27 and the code on back is 312",
        {"payment_card"},
        set(),
    ),
    # A bare number and a month and year are as often a serial and its expiry or a
    # shipment and its date.
    ("card bare then expiry", "Pallet 4111111111111111 11/27 to dock 3", set(), {"payment_card"}),
    ("serial then exp word", "Lot 4111111111111111 EXP 11/27", set(), {"payment_card"}),
    (
        "guid fragment digits",
        "trace 53622123-4111-1111-1111-111111111111 done",
        set(),
        {"payment_card", "ssn"},
    ),
    (
        "guid lower hex",
        "id 3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        set(),
        {"payment_card", "ssn", "mbi"},
    ),
    ("npi with keyword", "Dr. Lee, NPI 1234567893", {"clinician_id"}, set()),
    ("npi without keyword", "Call 1234567893 today", set(), {"clinician_id"}),
    ("dea with keyword", "DEA# AB1234563", {"clinician_id"}, set()),
    ("dea bad checksum", "DEA AB1234564", set(), {"clinician_id"}),
    ("icd dotted", "Assessment: E11.9 and I48.91", {"diagnosis_code"}, set()),
    ("icd bare with keyword", "Dx: I10", {"diagnosis_code"}, set()),
    ("icd bare without keyword", "Meet in room C50 at noon", set(), {"diagnosis_code"}),
    ("grid reference beside icd", "Totals in B12 and A15; dx E11.9", {"diagnosis_code"}, set()),
    ("grid reference alone", "See cell B12, A15 and C50 of the sheet", set(), {"diagnosis_code"}),
    (
        "icd code that does not exist",
        "Diagnosis code E11.99999 and U99.9",
        set(),
        {"diagnosis_code"},
    ),
    ("cpt with keyword", "CPT 99213 billed", {"procedure_code"}, set()),
    ("cpt list", "CPT codes: 99213, 99214 and 36415", {"procedure_code"}, set()),
    ("zip beside cpt", "CPT 99213. Springfield, IL 62704", {"procedure_code"}, set()),
    ("zip alone", "Ship to Springfield, IL 62704-1234", set(), {"procedure_code"}),
    ("hcpcs", "HCPCS G0439 annual wellness visit", {"procedure_code"}, set()),
    ("ndc with keyword", "NDC 0002-3227-30 dispensed", {"ndc"}, set()),
    ("ndc without keyword", "Part 0002-3227-30 in stock", set(), {"ndc"}),
    ("dob numeric", "DOB: 03/14/1962", {"date_of_birth"}, set()),
    ("dob words", "date of birth March 14, 1962", {"date_of_birth"}, set()),
    ("dob invalid date", "DOB: 02/30/1962", set(), {"date_of_birth"}),
    ("date without dob keyword", "Invoice dated 03/14/1962", set(), {"date_of_birth"}),
    ("mrn", "MRN: 00482913", {"mrn"}, set()),
    ("mrn after words", "The medical record number is A1234567.", {"mrn"}, set()),
    ("member id", "Member ID on file is XQ528002437", {"member_id"}, set()),
    ("account number", "patient account number 29486628", {"account_number"}, set()),
    ("drivers license", "Driver's license: D1234567", {"drivers_license"}, set()),
    (
        "lic inside duplicate",
        "duplicate 123456789 and publication 55512",
        set(),
        {"drivers_license"},
    ),
    ("lic as word", "Lic # 55512345", {"drivers_license"}, set()),
    ("patient name labelled", "Patient Name: O'Neill, Mei", {"patient_name"}, set()),
    ("patient name inline", "our patient Maria Garcia was seen", {"patient_name"}, set()),
    ("patient name in capitals", "PATIENT: GARCIA, MARIA", {"patient_name"}, set()),
    ("capitals inline are no name", "Use the patient PORTAL APP today", set(), {"patient_name"}),
    ("patient portal is no name", "Log in to the Patient Portal Today", set(), {"patient_name"}),
    ("home phone", "Home phone: (312) 555-0142", {"phone"}, set()),
    ("signature phone", "Phone: (312) 555-0142", set(), {"phone"}),
    ("home address", "Home address: 12 Oak Street, Springfield", {"address"}, set()),
    ("iban", "IBAN GB82 WEST 1234 5698 7654 32", {"iban"}, set()),
    ("condition", "history of type 2 diabetes", {"condition"}, set()),
    ("condition inside word", "The diabetesfree campaign", set(), {"condition"}),
    ("medication", "started metformin 500 mg", {"medication"}, set()),
    ("lab result", "HbA1c 8.1 %", {"lab_result"}, set()),
    ("recipient lab", "Your lab results are ready", {"recipient_health"}, set()),
    (
        "recipient prescription",
        "Your prescription for lisinopril is ready for pickup",
        {"recipient_health"},
        set(),
    ),
    (
        "recipient appointment",
        "your appointment with Dr. Patel on March 3",
        {"recipient_health"},
        set(),
    ),
    ("flu shot announcement", "Flu shots are available this week", set(), {"recipient_health"}),
]


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [case[1:] for case in FINDING_CASES],
    ids=[case[0] for case in FINDING_CASES],
)
def test_findings(detector: Detector, text: str, present: set[str], absent: set[str]) -> None:
    found = {finding.category for finding in detector.find(text)}
    for category in present:
        assert category in found, f"{category} not found"
    for category in absent:
        assert category not in found, f"{category} found"


# (case id, text, sensitive, rule)
VERDICT_CASES = [
    ("ssn alone", "SSN 536-22-1234", True, "high_risk_identifier"),
    (
        "ssn named before heavier rule",
        "Patient: Maria Garcia, DOB 03/14/1962, MRN 00482913, SSN 536-22-1234, asthma, E11.9",
        True,
        "high_risk_identifier",
    ),
    ("card alone", "card number 4111 1111 1111 1111", True, "high_risk_identifier"),
    (
        "identifier with diagnosis",
        "Patient: Maria Garcia, DOB 03/14/1962. Diagnosis E11.9.",
        True,
        "identifier_with_health",
    ),
    ("mrn with medication", "MRN 00482913 - continue lisinopril", True, "identifier_with_health"),
    ("identifier without health", "Patient account number 29486628, balance $40", False, "none"),
    (
        "health without identifier",
        "November is diabetes awareness month. Ask about metformin.",
        False,
        "none",
    ),
    ("clinician ids only", "Dr. Lee NPI 1234567893 DEA AB1234563 accepts referrals", False, "none"),
    (
        "recipient results",
        "Dear Ann, your lab results are now available in the portal.",
        True,
        "recipient_health",
    ),
    (
        "refill reminder",
        "Refill reminder: you are due for a refill of sertraline.",
        True,
        "recipient_health",
    ),
    ("ci test results", "Your test results are ready: 300 passed, 2 failed.", False, "none"),
    (
        "sales appointment",
        "Confirming your appointment on Tuesday with our sales team.",
        False,
        "none",
    ),
    ("hr appointment", "Your appointment with our HR team on Monday is confirmed.", False, "none"),
    (
        "dental cleaning",
        "Your dental cleaning is scheduled for Monday, June 3 at 2:00 PM with Dr. Alvarez.",
        True,
        "recipient_health",
    ),
    (
        "clinic appointment",
        "Reminder: your appointment on Tue Mar 3 at 9:00 at Maple Street Clinic.",
        True,
        "recipient_health",
    ),
    (
        "order mail",
        "Order ORD-2026-118273, invoice INV-00012345, ticket #48213, v2.14.3.",
        False,
        "none",
    ),
    (
        "phrase across a wrapped line",
        (
            "Your hereditary cancer panel results from Helixa Labs (collected\r\n"
            "12/18/2025) are complete."
        ),
        True,
        "recipient_health",
    ),
    (
        "phrase not across a blank line",
        "Your cancer panel results\r\n\r\nare complete.",
        False,
        "none",
    ),
    (
        "reminder of upcoming appointment",
        "This is a reminder of your upcoming appointment at Riverbend Heart Clinic.",
        True,
        "recipient_health",
    ),
    (
        "reminder of therapy session",
        "Quick reminder of your physical therapy session Thursday at 3:15 pm.",
        True,
        "recipient_health",
    ),
    (
        "reminder of training session",
        "Quick reminder of your training session Thursday at 3:15 pm at the clinic.",
        False,
        "none",
    ),
    (
        "results from your blood draw",
        "Results from your blood draw on 01/21/2026 are below.",
        True,
        "recipient_health",
    ),
    (
        "results of a background check",
        "Results of your background screening are attached.",
        False,
        "none",
    ),
    (
        "titer stated as a finding",
        "Because your hepatitis B titer is non-reactive, you need a booster dose.",
        True,
        "recipient_health",
    ),
    (
        "pt with initial and surname",
        "pt J. Alvarez A1c 9.2, increase metformin to 1000 bid",
        True,
        "identifier_with_health",
    ),
    (
        "cleared to return after surgery",
        (
            "Greg Tollefsen has been cleared to return to work on Monday, following his "
            "lumbar fusion surgery in December."
        ),
        True,
        "identifier_with_health",
    ),
    (
        "critical value with mrn",
        "CRITICAL RESULT NOTIFICATION\nMRN: 30048217\nTest: Potassium, serum",
        True,
        "identifier_with_health",
    ),
    (
        "two weak phrases about one appointment",
        (
            "Your appointment is confirmed for Tuesday.\n\nHi Gideon,\n\nYour appointment "
            "is confirmed. Service: dishwasher installation."
        ),
        False,
        "none",
    ),
    (
        "patient name with a measurement",
        "Pt: MARSH, DELIA  Acc K26-3309014\nK+ 6.8 mmol/L (crit >6.0), nonhemolyzed.",
        True,
        "identifier_with_health",
    ),
    (
        "clinician reviewed your lab work",
        "Dr. Lindqvist reviewed your lab work from 10/19.",
        True,
        "recipient_health",
    ),
    (
        "review of lab work without health",
        "I reviewed your lab work from Tuesday's titration. Nice job on the endpoint.",
        False,
        "none",
    ),
    (
        "street suffix is no doctor",
        "Your service appointment is confirmed.\nDrop-off: 4410 Lakeview Dr.\n",
        False,
        "none",
    ),
    (
        "street named after a medical center",
        "Your service appointment is confirmed at 4410 Medical Center Dr., bay 3.",
        False,
        "none",
    ),
    (
        "writing clinic is no care setting",
        "This is a reminder of your upcoming appointment at the writing clinic.",
        False,
        "none",
    ),
    (
        "rupees are no inr value",
        "Account number 44102291: the invoice total is INR 27,000 for the new printers.",
        False,
        "none",
    ),
    (
        "core bx with dob",
        "re: your pt, DOB 11/30/1967 - the path from the left breast core bx is final",
        True,
        "identifier_with_health",
    ),
]

# Messages phrased unlike anything in the corpus generator, as a check on the rules
# rather than on the corpus. (case id, text, sensitive)
UNSEEN_CASES = [
    ("brand drug", "Subscriber ID XQ123456789 refilled Lipitor 20 mg today.", True),
    (
        "mrn hash",
        "Attached is the lab report for Sarah Connor, MRN#: 99812345, hep C viral load.",
        True,
    ),
    (
        "colleague question",
        "Quick question about Mr. Johnson (DOB 4/12/58): his A1c came back at 9.2, adding glipizide?",
        True,
    ),
    (
        "admission note",
        "John Doe, MRN 4471182, was admitted last night with chest pain. Troponin negative.",
        True,
    ),
    (
        "positive test",
        "Per our call: Jane Roe, born 12/01/1990, tested positive for chlamydia.",
        True,
    ),
    (
        "covid result",
        "Your COVID-19 test result is now available. Log in to MyChart to view it.",
        True,
    ),
    (
        "pharmacy pickup",
        "Good news! Your prescription is ready for pickup at CVS Pharmacy, 12 Main St.",
        True,
    ),
    (
        "claim with codes",
        "Claims for member id ABC123456789 - dx F41.1, CPT 90837 x4 sessions.",
        True,
    ),
    (
        "pt line",
        "Pt: Robert Brown  DOB: 1955-07-19  Allergies: penicillin  Meds: warfarin 5mg daily",
        True,
    ),
    (
        "records request",
        "Her insurance ID is W123456789 and she is being treated for breast cancer.",
        True,
    ),
    ("spaced ssn", "SSN: 512 44 9087", True),
    ("card on file", "Please update the card on file: 5500 0000 0000 0004, exp 08/28.", True),
    (
        "biopsy call",
        "This is Dr. Smith's office. Your biopsy results are in; please call us.",
        True,
    ),
    (
        "quarterly results",
        "The Q3 results are ready. Revenue was up 12% and EBITDA reached $4.2M.",
        False,
    ),
    (
        "release note",
        "We released version 4.11.2 (build 20240917.3). Ticket SUP-88231 closed.",
        False,
    ),
    (
        "health webinar",
        "Webinar: Managing diabetes in the workplace. Dr. Jane Hill, MD will speak.",
        False,
    ),
    (
        "overdue invoice",
        "Invoice 2024-00918 for account 55128890 is overdue. Call (312) 555-0100.",
        False,
    ),
    (
        "portal launch",
        "Our new patient portal launches Monday! Patients can view lab results online.",
        False,
    ),
    (
        "clinic delivery",
        "Delivery for Dr. Patel: 3 boxes of gloves, PO 4500018812, tracking 9400111899223344556677.",
        False,
    ),
    ("rack notes", "Server E11 in rack B12 failed; replaced disk 4. Cost center 62704.", False),
    (
        "card ending",
        "Your order #112-4455667-1234567 has shipped. Card ending in 4242 was charged $23.99.",
        False,
    ),
    (
        "build regression",
        "Tested positive for the build regression; rolling back deploy 7f3a9c2.",
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in UNSEEN_CASES],
    ids=[case[0] for case in UNSEEN_CASES],
)
def test_unseen_messages(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


@pytest.mark.parametrize(
    ("text", "sensitive", "rule"),
    [case[1:] for case in VERDICT_CASES],
    ids=[case[0] for case in VERDICT_CASES],
)
def test_verdicts(detector: Detector, text: str, sensitive: bool, rule: str) -> None:
    verdict = detector.scan_text(text)
    assert verdict.sensitive is sensitive
    assert verdict.rule == rule


def test_verdict_holds_no_values(detector: Detector) -> None:
    verdict = detector.scan_text("SSN 536-22-1234, MRN 00482913")
    rendered = repr(verdict)
    assert "536" not in rendered
    assert "00482913" not in rendered


def test_verdict_counts_categories(detector: Detector) -> None:
    verdict = detector.scan_text("SSN 536-22-1234 and SSN 536-22-1235")
    assert verdict.categories == {"ssn": 2}


def test_zip_before_cpt_keyword_not_counted(detector: Detector) -> None:
    findings = detector.find("Springfield 62704 - CPT 99213")
    codes = [finding for finding in findings if finding.category == "procedure_code"]
    assert len(codes) == 1
    assert codes[0].start == len("Springfield 62704 - CPT ")


def test_text_with_too_many_keyword_hits_is_unscanned(detector: Detector) -> None:
    # Every "pt" is a keyword hit. Past MAX_HITS the rest are not kept, which bounds
    # the memory a message can make the milter use.
    verdict = detector.scan_text("pt " * (MAX_HITS + 1))
    assert verdict.unscanned_parts == [
        f"text 1 of 1: keywords after the first {MAX_HITS} hits not read"
    ]
    assert verdict.sensitive
    assert verdict.rule == "unscanned_part"


def test_text_at_keyword_hit_limit_is_scanned(detector: Detector) -> None:
    verdict = detector.scan_text("pt " * MAX_HITS)
    assert verdict.unscanned_parts == []
    assert not verdict.sensitive


def test_text_with_too_many_findings_is_unscanned(detector: Detector) -> None:
    # Each line is an SSN, sensitive on its own and with no keyword, so only the
    # finding limit applies. It bounds the memory of a part full of identifiers.
    verdict = detector.scan_text("536-22-1234\n" * (MAX_FINDINGS + 1))
    assert verdict.categories == {"ssn": MAX_FINDINGS}
    assert verdict.unscanned_parts == [
        f"text 1 of 1: findings after the first {MAX_FINDINGS} not read"
    ]
    assert verdict.sensitive


def test_text_at_finding_limit_is_scanned(detector: Detector) -> None:
    verdict = detector.scan_text("536-22-1234\n" * MAX_FINDINGS)
    assert verdict.categories == {"ssn": MAX_FINDINGS}
    assert verdict.unscanned_parts == []


def test_labelled_token_with_huge_date_part(detector: Detector) -> None:
    """A token read as a date whose part overflows a C int is no date, not an error."""
    verdict = detector.scan_text("MRN: 2020-1-9999999999999")
    assert verdict.categories == {"mrn": 1}


def test_make_finding_matches_constructor() -> None:
    finding = _make_finding("ssn", 4, 15, 0.95)
    constructed = Finding("ssn", 4, 15, 0.95)
    assert type(finding) is Finding
    assert finding == constructed
    assert hash(finding) == hash(constructed)
    assert repr(finding) == repr(constructed)
