"""Rules for mail that names care in plain words instead of labels: the reader's own
care ("your naltrexone runs out next week"), a third person's ("Harold Ferris ... his
COPD flare"), British spellings, wrapped labels, and lab products on invoices.

The cases were written for these tests. Each table checks a shape of mail, with
ordinary mail of the same shape beside it.
"""

from __future__ import annotations

import pytest

from postveil.detection import Detector
from postveil.detection.keywords import british_spellings

# (case id, text, sensitive)
OWN_CARE_CASES = [
    (
        "drug runs out",
        "You mentioned your sertraline runs out on Friday, so I sent a refill.",
        True,
    ),
    ("supply of drug", "Your next shipment of Enbrel leaves our pharmacy tomorrow.", True),
    (
        "drug stopped before a date",
        "Stop your warfarin after the evening dose on Monday, March 2.",
        True,
    ),
    ("procedure booked", "Your knee replacement with Dr. Aldana is scheduled for April 9.", True),
    (
        "procedure on a weekday",
        "Your colonoscopy is this Thursday at 7:30, so start the prep tonight.",
        True,
    ),
    ("test value", "Your A1c came back at 9.1, so let's talk about the metformin dose.", True),
    ("wrapped sentence", "Your metformin dose goes up to\n1000 mg twice a day from Monday.", True),
    ("dose", "Keep taking your lisinopril 20 mg every morning.", True),
    (
        "numbered visit",
        "Just a reminder that your 2-week post-op visit is next Tuesday at 9.",
        True,
    ),
    # General advice, invitations and conditions name "your" drug or test too.
    ("advice without anchor", "Never double your insulin dose if you miss one.", False),
    ("condition", "If your A1c was above 7 last year, the program can help.", False),
    ("invitation with day", "Get your flu shot on Saturday at any of our stores.", False),
    (
        "booking campaign",
        "Schedule your mammogram by December 31 to use this year's benefit.",
        False,
    ),
    ("animal", "Your dog's carprofen 75 mg tablets ship Monday.", False),
    ("plan coverage", "Your plan covers an MRI at 80% after the deductible.", False),
    ("newsletter target", "Your LDL cholesterol should be under 100 for most adults.", False),
    # The health word must head its phrase: here it names something else.
    ("modifier of a noun", "Your stress test environment is scheduled for Friday at 02:00.", False),
    ("product order", "Your lithium carbonate order ships on Tuesday.", False),
    # Element tests are run on soil and water too, so they need a clinical unit.
    ("soil test", "Your potassium came back at 180 in the north field sample.", False),
    ("element with unit", "Your potassium came back at 5.9 mmol/L this morning.", True),
    ("veterinary", "Your gabapentin for Pepper (canine) is ready for pickup today.", False),
    ("others test you", "Staff test your haemoglobin with a finger prick on Saturday.", False),
    ("plan year", "Your annual mammogram is covered at 100% from January 1.", False),
    ("instruction with dose", "Please take your lisinopril 10 mg each morning.", True),
    # Invitations and storage advice anywhere before "your" make the sentence general.
    ("workshop", "Join our free workshop on managing your diabetes next week.", False),
    ("learn more", "Learn more about your diabetes on Tuesday, March 3, at the library.", False),
    ("storage advice", "Store your insulin in the fridge until Friday.", False),
    ("exam as the care", "Your exam has been scheduled for Tuesday at the eye clinic.", True),
    ("advice without dose", "Take your insulin before meals and after exercise on Sunday.", False),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in OWN_CARE_CASES],
    ids=[case[0] for case in OWN_CARE_CASES],
)
def test_own_care(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


NARRATIVE_CASES = [
    (
        "possessive condition",
        (
            "Can you call Harold Ferris today? He went home Monday after his COPD flare, on a "
            "prednisone taper."
        ),
        True,
    ),
    (
        "takes a drug",
        (
            "I'd like to book Lena Kovac with you. She was referred after the accident, and "
            "she's started taking prazosin for the nightmares."
        ),
        True,
    ),
    (
        "dose change",
        "Your mom, Consuelo Reyes, slept most of today. We increased her morphine to 5 mg.",
        True,
    ),
    (
        "relative",
        (
            "Your dad has been sleeping most of the day at the hospice. We doubled his "
            "oxycodone at noon."
        ),
        True,
    ),
    (
        "research topic",
        (
            "Please welcome Dr. Ines Baptiste. Priya Mahajan will present her diabetes research "
            "at noon."
        ),
        False,
    ),
    (
        "work on a topic",
        "The award goes to Tomas Oyelaran for his work on sepsis in the emergency room.",
        False,
    ),
    (
        "name in a greeting",
        "Hi Jonah Abebe,\nthe leaflet explains how his asthma inhaler works for any child.",
        False,
    ),
    (
        "one condition in a story",
        "In chapter two, Elena Marsh learns that her pneumonia will keep her from the ball.",
        False,
    ),
    (
        "surname that is also a rank",
        "Maria King was seen today for her asthma.",
        True,
    ),
    (
        "title as a given name",
        "Admiral Tobias sailed in 1812. He had gout, and his ship's surgeon bled him twice.",
        False,
    ),
    (
        "refused dose",
        "Visit at Mr. Tam Okoro's this morning. He refused his metoprolol again.",
        True,
    ),
    (
        "other paragraph",
        (
            "Thanks to Maria Lindqvist for the slides.\n\nA patient may not know his diabetes "
            "medicine by name."
        ),
        False,
    ),
]


PHRASE_CASES = [
    (
        "booked with doctor",
        "You're booked with Dr. Osei on Wed 4/2 at 10am for your cleaning at Elm Dental.",
        True,
    ),
    ("booked for your", "You are scheduled Monday at 8 for your MRI at the imaging center.", True),
    (
        "results of your panel",
        "Results of your thyroid panel drawn on March 3 are in your chart.",
        True,
    ),
    ("test found", "As we discussed, your test found a pathogenic variant in BRCA1.", True),
    ("thesis defence", "You're scheduled with Dr. Ivers on May 2 for your thesis defense.", False),
    ("speed test", "Results of your broadband speed test: 94 Mbps down, 12 up.", False),
    ("security scan", "Your weekly scan found 3 outdated plugins on the site.", False),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in PHRASE_CASES],
    ids=[case[0] for case in PHRASE_CASES],
)
def test_recipient_phrases(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in NARRATIVE_CASES],
    ids=[case[0] for case in NARRATIVE_CASES],
)
def test_third_person_narrative(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


LABEL_CASES = [
    ("abbreviated label", "Account no.: SR-88-553071\nER visit for a kidney stone, 09/02", True),
    ("licence with state", "Driver's license: IL D452-7719-3081\nDistal radius fracture", True),
    ("label across a line break", "His member\nID is XQH449021877. Seen for sciatica.", True),
    (
        "lab products on an invoice",
        "Account No. 55120984\nHbA1c control, level 1    3 x $86.00\nLipid panel calibrator set",
        False,
    ),
    ("paragraph break", "His member\n\nID is on the card. Seen for sciatica.", False),
    ("contractor licence", "Lic # CA 1045872. Scope: build the chemo infusion bay.", False),
    (
        "trade's licence in a signature",
        "A hairline fracture in the cast iron drain.\nTolliver Plumbing, lic #PL-20931",
        False,
    ),
    ("licence after DL", "DL: OH K381-5520-9174\nDistal radius fracture", True),
    ("label suffix capitalised", "Driver License No.: T418-2290-6631\nDistal radius fracture", True),
    ("hospital number label", "Hospital No: GH-2411873\nMalaria parasite: positive", True),
    # Policy and account references of suppliers and gyms take these forms too.
    ("letters, space, digits", "Member #: LSC 4471902\nNew this year: physiotherapy", False),
    ("reference with slashes", "Policy No.: PL/2026/88412\nphysical therapy", False),
    ("month and year after label", "Account No.: 11/2026\nStatement for your MRI", False),
    ("blank line after label", "MRN:\n\n40318276\nSeen for asthma.", False),
    ("lab value then product", "Account number: 55120984\n4 x INR 50 test strips", False),
    (
        "value with unit then product",
        "Account number: 40318276. Troponin I 0.92 ng/mL control, 2 x 5 mL",
        False,
    ),
    ("patient's home meter", "MRN 40318276: INR 4.2 on home meter this morning.", True),
    ("contractor licence over a line", "Lic\n# CA 1045872. Scope: the chemo infusion bay.", False),
    (
        "phone abbreviation",
        "Thanks, Lee\nPhn: 604-555-0102\nSorry to hear about your asthma.",
        False,
    ),
    # National and provincial health numbers outside the US, after their label.
    ("NHS number", "NHS number: 943 476 5919\nDiagnosis: type 2 diabetes", True),
    ("Australian Medicare card", "Medicare card: 2123 45670 1. Root canal on tooth 36.", True),
    ("Ontario health card", "OHIP 1234567897-AB, seen for asthma", True),
    ("NHS label, Luhn number", "NHS number: 1234567897\nasthma", False),
    ("NHS number, wrong check digit", "NHS number: 943 476 5918\nasthma", False),
    ("NHS service number", "Call NHS 111 if your asthma gets worse.", False),
    (
        "reagent two words on",
        "Account No. 884120\nTroponin I reagent pack  2 x $310.00",
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in LABEL_CASES],
    ids=[case[0] for case in LABEL_CASES],
)
def test_labels_and_products(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


@pytest.mark.parametrize(
    ("word", "british"),
    [
        ("hemoglobin a1c", ["haemoglobin a1c"]),
        ("anemia", ["anaemia"]),
        ("hypoglycemia", ["hypoglycaemia"]),
        ("edema", ["oedema"]),
        ("pediatrics", ["paediatrics"]),
        ("diarrhea", ["diarrhoea"]),
        ("sleep apnea", ["sleep apnoea"]),
        ("medical center", ["medical centre"]),
        ("hospitalized", ["hospitalised"]),
        # Words that only look like the American forms keep their spelling.
        ("academic", []),
        ("epidemic", []),
        ("systemic", []),
        ("them", []),
        ("size", []),
    ],
)
def test_british_spellings(word: str, british: list[str]) -> None:
    assert british_spellings(word) == british


def test_british_spelling_counts(detector: Detector) -> None:
    text = "MRN 4471902: haemoglobin 8.1 g/dL, anaemia work-up, paediatric ward."
    assert detector.scan_text(text).sensitive


def test_crlf_message_matches_like_lf(detector: Detector) -> None:
    # SMTP bodies end lines with CRLF; a label wrapped over a line still counts.
    raw = (
        b"Subject: claim\r\nContent-Type: text/plain\r\n\r\n"
        b"Please update the member\r\nID: A12345678 for the diabetes claim.\r\n"
    )
    assert detector.scan_message(raw).rule == "identifier_with_health"


def test_own_care_span_starts_at_your(detector: Detector) -> None:
    text = "your\r\nwarfarin 5 mg daily"
    spans = [(f.start, f.end) for f in detector.find(text) if f.category == "recipient_health"]
    assert spans == [(0, 14)]
