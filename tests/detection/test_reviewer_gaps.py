"""Rule gaps found with the reviewer set (tests/detection/reviewer), one table per gap.

The cases here were written for these tests, and none is copied from that set. Each
table checks the shape of mail that a rule covers rather than one message.
"""

from __future__ import annotations

import pytest

from postveil.detection import Detector

# (case id, text, sensitive)
RECIPIENT_CASES = [
    # A test name, with or without a qualifier before it, then "results are ...".
    ("qualified ultrasound", "Your thyroid ultrasound results are now available online.", True),
    ("genetic results", "Hi Omar, your genetic test results have been released.", True),
    ("visit results", "Your results from your last check-up are ready to view.", True),
    # A result written as a finding.
    ("swab negative", "Your strep swab came back negative, so no antibiotics.", True),
    ("screening nonreactive", "Your HIV screening test was non-reactive.", True),
    ("result colon", "Your hepatitis C test result: POSITIVE. Please call us.", True),
    # A dose with a decimal point inside the prescription phrase.
    ("decimal dose", "Your refill of levothyroxine 0.075 mg is ready for pickup.", True),
    # "you have an appt" as well as "your appointment".
    ("appt with doctor", "Reminder: you have an appt on Fri 1/8 at 9:40 with Dr. Nakamura.", True),
    ("appointment at clinic", "You have an appointment at the eye clinic on 3/14 at 11:00.", True),
    # Claim notices count with a health word.
    ("imaging claim", "Your claim for the 10/5 MRI at Westfield Imaging has been processed.", True),
    # A refill reminder counts with a drug, a prescription or a pharmacy.
    ("refill with drug", "Refill reminder: your metformin supply runs out on Monday.", True),
    ("ci unit tests", "Your unit test results are ready: 48 passed, 0 failed.", False),
    ("ab test", "Your A/B test returned a 4% uplift in sign-ups.", False),
    ("flaky build", "Your build test was flaky again; see the attached log.", False),
    (
        "lab qc run",
        "Your PCR test run on the new thermocycler was positive for the control.",
        False,
    ),
    ("toner refill", "Refill reminder: the printer toner on the 2nd floor is low.", False),
    ("car claim", "Your claim for the windshield repair has been approved.", False),
    (
        "claim with hospital signature",
        "Your claim for the stolen bike has been approved.\n-- \nRisk Office, Elm Hospital",
        False,
    ),
    (
        "eob services",
        "Your claim for services on 4/2 at Elm Hospital has been processed. You owe $0.",
        True,
    ),
    (
        "expense claim",
        "Your expense claim for the diabetes CME course has been approved.",
        False,
    ),
    ("insurance claim paid", "Your insurance claim for the fender bender has been paid.", False),
    (
        "facilities appointment",
        "You have an appointment with the facilities team on Monday.",
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in RECIPIENT_CASES],
    ids=[case[0] for case in RECIPIENT_CASES],
)
def test_recipient_phrases(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


def _message(subject: str, body: str) -> bytes:
    return (
        f"From: office@example.org\r\nTo: staff@example.org\r\nSubject: {subject}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


# (case id, subject, body, sensitive)
REPEATED_PHRASE_CASES = [
    ("coffee refill", "Refill reminder", "Refill reminder: top up the coffee beans.", False),
    (
        "water cooler",
        "Refill reminder: water cooler",
        "Refill reminder - please swap the bottle when empty.",
        False,
    ),
    (
        "pharmacy refill",
        "Refill reminder",
        "Refill reminder from Elm Street Pharmacy: your losartan is due.",
        True,
    ),
]


@pytest.mark.parametrize(
    ("subject", "body", "sensitive"),
    [case[1:] for case in REPEATED_PHRASE_CASES],
    ids=[case[0] for case in REPEATED_PHRASE_CASES],
)
def test_repeated_phrase_counts_once(
    detector: Detector, subject: str, body: str, sensitive: bool
) -> None:
    assert detector.scan_message(_message(subject, body)).sensitive is sensitive


# (case id, text, sensitive)
PATIENT_NAME_CASES = [
    # "SURNAME, GIVEN" in capitals after "Pt" or "Patient" without a colon.
    ("caps after patient", "Patient DUBOIS, ANNETTE hemoglobin 6.8 g/dL, transfuse 1 unit.", True),
    ("caps after pt", "Pt OYELARAN, BISI lactate 4.1, sepsis bundle started.", True),
    ("field labels", "Patient MRN, DOB and allergy list are needed before warfarin.", False),
    (
        "team names",
        "Patient PORTAL, BILLING and SCHEDULING teams discuss diabetes outreach.",
        False,
    ),
    # A name before "DOS" or "date of service", with a code or health word after it.
    ("name before dos", "Appeal for Marcus Hale, DOS 03/02/2026, CPT 29881 was denied.", True),
    (
        "date of service",
        "Luisa Ortega, date of service 2/2/2026, coded J45.909 on the claim.",
        True,
    ),
    ("dos without health", "Janet Fuller, DOS 4/1 for the vendor fair booth, $400.", False),
    (
        "dos without date",
        "Carla Mendes, DOS training for the scanner, then the MRI safety talk.",
        False,
    ),
    ("payer before dos", "Underpaid: Blue Cross, DOS 3/2/2026, CPT 99214, paid $61.", False),
    # A dotted ICD-10-CM code without its keyword is health evidence for a cue.
    ("dotted code only", "Peter Okafor was seen today for E78.5, recheck in 3 months.", True),
    # "claim for" is no cue, because billing mail names payers that way.
    ("claim for payer", "Please resubmit the claim for Blue Cross with CPT 99214.", False),
    # Workers' compensation labels.
    ("claimant label", "Claimant: Rosa Delacroix, lumbar radiculopathy per MRI 9/12.", True),
    ("injured worker", "Injured worker Tobias Renner has a fracture of the left wrist.", True),
    ("claimant company", "Claimant: Halvorsen Logistics, disputed invoice 5512.", False),
    # "Resident:" labels a care home's resident, but not a physician in training.
    (
        "care home resident",
        "Resident: Herbert Quill, rm 118 - new pressure injury on sacrum.",
        True,
    ),
    ("resident in capitals", "Resident: KOVAC, MILA  donepezil 10 mg at bedtime", True),
    ("resident physician", "Resident: Jane Kim, MD - presents the heart failure case.", False),
    ("resident trainee", "Resident: Omar Haddad (PGY-2) covers the diabetes clinic today.", False),
    ("resident doctor", "Resident: Dr Lena Fox, consult for atrial fibrillation.", False),
    ("resident in prose", "The resident Jane Kim presented the COPD case at noon.", False),
    ("resident surname", "Night resident Patel: BP 182/104 in bed 4, gave labetalol.", False),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in PATIENT_NAME_CASES],
    ids=[case[0] for case in PATIENT_NAME_CASES],
)
def test_patient_name_shapes(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


# (case id, text, sensitive) with an identifier in every text, so the health
# vocabulary alone decides.
VOCABULARY_CASES = [
    ("bipolar variant", "MRN 5530912: bipolar II disorder, restarting meds.", True),
    ("manic episode", "MRN 5530913 had a manic episode last week.", True),
    ("lithium dosing", "Chart #: 7712045, on lithium since 2019.", True),
    ("pediatric fever", "DOB 3/3/2019, fever of 103 overnight, gave Motrin.", True),
    ("otc drug", "Member ID HX20044718 takes acetaminophen for pain.", True),
    ("ortho procedure", "Member ID HX20044719 approved for rotator cuff repair.", True),
    ("dental procedure", "Acct #70041228 - root canal on #19 completed today.", True),
    ("infection control", "MRN 6612044 is MRSA positive, contact precautions.", True),
    ("screening score", "Patient: Nora Ellison, PHQ-9 score 17, GAD-7 of 12.", True),
    ("lithium batteries", "Account number 77120455: lithium batteries x 40 for telemetry.", False),
    ("implant trays", "Account number 88120044: 12 knee implant trays shipped to OR 4.", False),
    ("phq form", "Account number 88120045: please print PHQ-9 forms for the lobby.", False),
    # Words the twelfth set's misses lacked.
    ("fertility cycle", "Member number: 4410229017. Egg retrieval on Monday, then embryo transfer.", True),
    ("hearing loss", "Acct 5512907: sensorineural hearing loss, left ear.", True),
    ("sleep apnea machine", "Member ID 88812345: CPAP compliance report attached.", True),
    ("ms infusion", "Policy # 77120456 - Ocrevus infusion approved.", True),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in VOCABULARY_CASES],
    ids=[case[0] for case in VOCABULARY_CASES],
)
def test_health_vocabulary(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


def test_screening_score_names_subject_person(detector: Detector) -> None:
    """A screening score and a drug make the body clinical, so a name in the Subject
    is the patient's."""
    raw = _message("Re: Ingrid Solberg", "PHQ-9 was 21 today and she stays on fluoxetine.")
    verdict = detector.scan_message(raw)
    assert verdict.sensitive
    assert verdict.categories.get("patient_name") == 1


# (case id, Subject, body, sensitive). A care topic before a dash or colon may
# precede the name in the Subject; the body still has to read as clinical.
SUBJECT_TOPIC_CASES = [
    (
        "certification topic",
        "Medical certification - Owen Pratt",
        "Approved leave for chemotherapy for colon cancer through March.",
        True,
    ),
    (
        "referral topic inverted",
        "Re: Referral: Ortiz, Camila",
        "Seen for atrial fibrillation, started apixaban 5 mg bid.",
        True,
    ),
    (
        "speaker topic",
        "Guest speaker - Helen Ruiz",
        "She will talk about living with diabetes and starting metformin.",
        False,
    ),
    (
        "credential topic",
        "Certification - Maya Lind, BLS",
        "Covers cardiac arrest, heart failure drips and amiodarone dosing.",
        False,
    ),
    (
        "topic without clinical body",
        "FMLA paperwork - Owen Pratt",
        "Owen is out Friday for a family wedding.",
        False,
    ),
]


@pytest.mark.parametrize(
    ("subject", "body", "sensitive"),
    [case[1:] for case in SUBJECT_TOPIC_CASES],
    ids=[case[0] for case in SUBJECT_TOPIC_CASES],
)
def test_subject_topic_then_name(
    detector: Detector, subject: str, body: str, sensitive: bool
) -> None:
    assert detector.scan_message(_message(subject, body)).sensitive is sensitive
