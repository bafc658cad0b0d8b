"""Rule gaps found with the reviewer set (tests/detection/reviewer), one table per gap.

The cases here are written for these tests; none is copied from that set, so each
table checks the shape of mail a rule covers rather than one message.
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
    ("decimal dose", "Your prescription for amlodipine 2.5 mg is ready for pickup.", True),
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
    ("toner refill", "Refill reminder: the printer toner on the 2nd floor is low.", False),
    ("car claim", "Your claim for the windshield repair has been approved.", False),
    ("insurance claim paid", "Your insurance claim for the fender bender has been paid.", False),
    ("facilities appointment", "You have an appointment with the facilities team on Monday.", False),
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
