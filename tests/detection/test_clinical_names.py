"""Patients named without a label, lab values and clinical shorthand: one table per rule."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from postveil.detection import Detector
from postveil.detection.people import (
    _TOPIC_WORDS,
    TOPIC,
    _by_first_letter,
    _list_rows_in,
    find_list_rows,
    subject_names_person,
    whole_text_list_rows,
)

# (case id, text, categories that must be found, categories that must not be found)
LAB_VALUE_CASES = [
    ("a1c with percent", "A1c 9.1% today", {"lab_result"}, set()),
    ("hba1c came back at", "HbA1c came back at 8.4%", {"lab_result"}, set()),
    ("inr without unit", "INR 4.2 on warfarin", {"lab_result"}, set()),
    ("egfr down to", "eGFR down to 38", {"lab_result"}, set()),
    ("troponin with unit", "troponin I 0.92 ng/mL", {"lab_result"}, set()),
    ("inr analyzer is no value", "the INR analyzer in lab 2 is down", set(), {"lab_result"}),
    ("psa test alone", "ask about the PSA screening", set(), {"lab_result"}),
    ("target below is no value", "keep your HbA1c below 7%", set(), set()),
    ("date after test name", "TSH 2026-12-01 order", set(), {"lab_result"}),
]

# Short names are looked for only near other health information, in texts that could
# be about one person (here "pt" or "Mr."), and count only with a unit or a reading.
SHORT_LAB_CASES = [
    ("blood pressure reading", "pt Vance: BP 168/94 on amlodipine", {"lab_result"}, set()),
    ("ejection fraction", "Mr. Vance, CHF with EF 35%", {"lab_result"}, set()),
    ("alt with unit", "pt Vance: ALT 88 U/L after atorvastatin", {"lab_result"}, set()),
    ("potassium through its unit", "pt Vance: K 5.9 mmol/L", {"clinical_context"}, set()),
    ("bp without health words", "pt Vance: BP 168/94", set(), {"lab_result"}),
    ("bp without person cue", "BP 168/94 on amlodipine", {"medication"}, {"lab_result"}),
    ("ef without unit", "pt Vance: EF 35 on metformin", {"medication"}, {"lab_result"}),
    ("ef inside word", "pt Vance: REF 35% on metformin", {"medication"}, {"lab_result"}),
]

CONTEXT_CASES = [
    ("history shorthand", "62 y/o M w/ hx of CHF", {"clinical_context", "condition"}, set()),
    ("dosing instruction", "metformin 1000 mg bid", {"clinical_context"}, set()),
    ("unit after number", "sodium? 124 mmol/L", {"clinical_context"}, set()),
    ("unit without number", "results in mmol/L", set(), {"clinical_context"}),
    (
        "code prefix",
        "Order HX-55821: 12 bottles of asthma inhaler trainers",
        set(),
        {"clinical_context"},
    ),
    ("history after a code prefix", "Order HX-55821. Hx of asthma.", {"clinical_context"}, set()),
    ("clinical abbreviation", "known CKD and T2DM", {"condition"}, set()),
]

NAME_CASES = [
    ("possessive honorific", "Mr. Lee's HbA1c 8.4%, on insulin", {"patient_name"}, set()),
    (
        "honorific with tie",
        "Mrs. Lindgren: potassium 5.9 mmol/L, on lisinopril",
        {"patient_name"},
        set(),
    ),
    ("honorific with age", "Mrs. Harriet Noble, 67, stage IIIA NSCLC", {"patient_name"}, set()),
    (
        "honorific without tie",
        "Ms. Romero will present the diabetes program and insulin pump contract.",
        set(),
        {"patient_name"},
    ),
    (
        "honorific with credentials",
        "Ms. Nadine Ferro, RN, speaks on diabetes. Metformin 500 mg bid.",
        set(),
        {"patient_name"},
    ),
    (
        "honorific far from health",
        "Thanks to Mr. Lund." + " Cake at three." * 30 + " Metformin 500 mg bid.",
        set(),
        {"patient_name"},
    ),
    (
        "was seen today",
        "Maria Gonzalez was seen today for her diabetes follow-up",
        {"patient_name"},
        set(),
    ),
    ("presented with", "Ravi Chandran (54M) presented with chest pain", {"patient_name"}, set()),
    ("referring", "I am referring Ms. Ines Carvalho for type 2 diabetes", {"patient_name"}, set()),
    ("saw your pt", "Saw your pt Rosalind Achebe today, CKD stage 3b", {"patient_name"}, set()),
    (
        "pt surname with tie",
        "pt Delgado seen in clinic, BP 168/94, amlodipine",
        {"patient_name"},
        set(),
    ),
    (
        "name with age and sex",
        "Eleanor Pryce, 84F, on oxycodone 5 mg q4h prn",
        {"patient_name"},
        set(),
    ),
    (
        "doctor is no patient",
        "Dr. Jane Hill was seen presenting the asthma data",
        set(),
        {"patient_name"},
    ),
    (
        "name without cue",
        "Talia Norcross has oncology experience and gave chemotherapy.",
        set(),
        {"patient_name"},
    ),
    (
        "sentence opener is no name",
        "Today Gonzalez was seen about metformin pricing",
        set(),
        {"patient_name"},
    ),
    (
        "pasted table",
        "Name\tDx\nHollis, Dana\tCHF\nFreitas, Paulo\tCOPD\n",
        {"patient_name"},
        set(),
    ),
    (
        "table health in header only",
        "Name\tDiabetes program role\nDana Hollis\tlead\nPaulo Freitas\tbudget\n",
        set(),
        {"patient_name"},
    ),
    (
        "one table row",
        "Name\tRole\nDana Hollis\tdiabetes educator\n",
        set(),
        {"patient_name"},
    ),
    (
        "room and lowercase title",
        "rm 12 - mrs okafor, gave 8u novolog per sliding scale, recheck q4h prn",
        {"patient_name"},
        set(),
    ),
    (
        "bed and bracketed surname",
        "fyi bed 4 (delgado) tested positive for c diff, vanc 125 mg po q6h",
        {"patient_name"},
        set(),
    ),
    (
        "room and name without tie",
        "The diabetes class moves to Room 12 (Delgado), next to the cafeteria.",
        set(),
        {"patient_name"},
    ),
    (
        "bed and bracketed state",
        "bed 4 (isolation) tested positive for c diff last week, vanc 125 mg po q6h",
        set(),
        {"patient_name"},
    ),
    (
        "room and capitalised surname",
        "rm 5 Gomez - NPO after MN for lap chole 0730, recheck w AM labs. pain ok on tylenol.",
        {"patient_name"},
        set(),
    ),
    (
        "titled name, ward shorthand tie",
        "the lady in 22 - Mrs. Abernathy - fell at 0300. No LOC, CT head neg.",
        {"patient_name"},
        set(),
    ),
    (
        "room and building name",
        "Room 12 Harlan Hall - diabetes awareness talk at noon",
        set(),
        {"patient_name"},
    ),
    (
        "room and capitalised use",
        "Room 5 Storage - NPO after MN signs and diabetes leaflets go here",
        set(),
        {"patient_name"},
    ),
    (
        "room and bare word",
        "room 3 renovation done, the diabetes clinic moves in on monday",
        set(),
        {"patient_name"},
    ),
    (
        "list rows with health and tie",
        (
            "Rm 12:\n - Eli Vasquez: peanut anaphylaxis, EpiPen\n"
            " - Noor Haddad: asthma, albuterol 2 puffs prn\n"
        ),
        {"patient_name"},
        set(),
    ),
    (
        "list rows of a staff directory",
        (
            "Leah Moreno: diabetes educator, ext. 4410\n"
            "Sam Whitley: asthma nurse navigator, ext. 4412\n"
        ),
        set(),
        {"patient_name"},
    ),
    (
        "list rows with brackets",
        (
            "Bernard Kowalczyk (end-stage COPD, J44.9) - morphine 5 mg q2h PRN\n"
            "Gloria Esposito (metastatic pancreatic cancer) - intake on 11/20\n"
        ),
        {"patient_name"},
        set(),
    ),
    (
        "census rows with codes",
        (
            "RM   RESIDENT          ADMIT     PRIMARY DX\n"
            "104  ESPOSITO, GLORIA  11/20/26  C25.9 PANCREATIC CA\n"
            "118  TRAN, VUONG       11/18/26  I63.9 CVA\n"
        ),
        {"patient_name"},
        set(),
    ),
    (
        "coding index rows",
        "Screening, Colon  Z12.11\nScreening, Breast  Z12.31\nSCREENING, LUNG  Z12.2\n",
        set(),
        {"patient_name"},
    ),
    (
        "one census row with a code",
        "104  ESPOSITO, GLORIA  11/20/26  C25.9 PANCREATIC CA\nSee the tip for E11.9.\n",
        set(),
        {"patient_name"},
    ),
    (
        "family member with tie",
        "Your mother, Edith Bixby, had a fall. The x-ray showed no fracture; tylenol q6h prn.",
        {"patient_name"},
        set(),
    ),
    (
        "family member without tie",
        "Your son, Mateo Reyes, won the science fair with a project on asthma.",
        set(),
        {"patient_name"},
    ),
    (
        "honorific and a drug someone is on",
        "Dr. H - see below from Mrs. Abernathy. She's on amoxicillin since Friday.",
        {"patient_name"},
        set(),
    ),
    (
        "honorific and a drug someone takes",
        "Mr. Quinlan has an extraction on the 14th. He also takes warfarin.",
        {"patient_name"},
        set(),
    ),
    (
        "honorific and patients on a drug",
        "Ms. Fielding will bring samples; many of our patients are on Ozempic.",
        set(),
        {"patient_name"},
    ),
    (
        "inverted name with age and sex",
        "512 Pruitt, Lavinia 34F - DKA, insulin gtt, K 3.4 mmol/L, BMP q4h",
        {"patient_name"},
        set(),
    ),
    (
        "one list row",
        "Speakers:\n - Dana Hollis: diabetes educator\n - Sam Reyes: welcome\n",
        set(),
        {"patient_name"},
    ),
]


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [case[1:] for case in LAB_VALUE_CASES + SHORT_LAB_CASES + CONTEXT_CASES + NAME_CASES],
    ids=[case[0] for case in LAB_VALUE_CASES + SHORT_LAB_CASES + CONTEXT_CASES + NAME_CASES],
)
def test_clinical_case_findings(
    detector: Detector, text: str, present: set[str], absent: set[str]
) -> None:
    found = {finding.category for finding in detector.find(text)}
    for category in present:
        assert category in found, f"{category} not found"
    for category in absent:
        assert category not in found, f"{category} found"


# (case id, text, sensitive)
VERDICT_CASES = [
    (
        "named person with diabetes",
        "Maria Gonzalez was seen today for her diabetes follow-up; metformin increased to 1000 mg.",
        True,
    ),
    ("honorific and lab value", "Mr. Lee's HbA1c 8.4% - start insulin?", True),
    (
        "meeting minutes",
        (
            "Dr. Anand will present the diabetes program budget. Mr. Whitaker: insulin pump "
            "contract renews in March."
        ),
        False,
    ),
    (
        "study recruitment",
        (
            "Adults with type 2 diabetes and an A1c between 7% and 10% may qualify. Contact "
            "Ms. Yara Haddou."
        ),
        False,
    ),
    (
        "case question without name",
        "A 45-year-old woman presents with fatigue; TSH 12 mIU/L.",
        False,
    ),
    (
        "shorthand does not help ci mail",
        "Your test results are ready. hx of flaky tests, 3 prn.",
        False,
    ),
    # Cue words that ordinary mail uses too: the name needs a lab value or shorthand.
    (
        "please call staff",
        "Questions about the flu vaccination clinic? Please call Sarah Kim.",
        False,
    ),
    ("saw at an event", "I saw Tom Baker at the asthma walk on Sunday!", False),
    ("presented with a team", "Dana Whitfield presented with the diabetes team.", False),
    ("underwent training", "Jane Roe underwent training in insulin pump programming.", False),
    ("seen at an expo", "Sarah Kim was seen at the diabetes expo with brochures.", False),
    (
        "admitted to a college",
        "Mark Feld was admitted to the College of Executives. He led our cancer program.",
        False,
    ),
    ("please call with lab value", "Please call Nathaniel Oduya: his PSA is 8.6 ng/mL.", True),
    ("tested positive", "Per our call, Jane Roe tested positive for chlamydia.", True),
    ("pt surname and age", "Pt Harmon, 71 y/o F, hx of COPD, sats 88% on room air.", True),
    # A courtesy title in a greeting or a direct address names the recipient.
    (
        "greeting with lab value",
        "Hi Ms. Park, the HbA1c 7.2% panel metric is up; insulin too.",
        False,
    ),
    (
        "thanks with lab value",
        "Thanks Ms. Lopez! QC glucose 100 mg/dL, insulin fridge at 4 C.",
        False,
    ),
    ("address with dose", "Mr. Chen, your order: metformin 500 mg daily packs x 40.", False),
    ("title then dash", "Mr. Lee - HbA1c 8.4%, on insulin glargine 20 units qhs.", True),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in VERDICT_CASES],
    ids=[case[0] for case in VERDICT_CASES],
)
def test_verdicts(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


# (case id, Subject, whether it is a person's name)
SUBJECT_CASES = [
    ("reply with name", "Re: Harold Vance", True),
    ("forward inverted", "FW: Pemberton, Gail", True),
    ("name and description", "Re: Talia Norcross - RN candidate", True),
    ("honorific", "Mr. Varga", True),
    ("ordinary subject", "Re: Budget review", False),
    ("sentence", "Lunch is served in the atrium today", False),
    ("opener word", "Re: Thursday Update", False),
    ("title-case event", "Re: Grand Rounds", False),
    ("column heading", "Coding Corner: five unspecified codes to stop using", False),
    ("titled name and colon", "Mr. Varga: labs", True),
]


@pytest.mark.parametrize(
    ("subject", "expected"),
    [case[1:] for case in SUBJECT_CASES],
    ids=[case[0] for case in SUBJECT_CASES],
)
def test_subject_names_person(subject: str, expected: bool) -> None:
    assert subject_names_person(subject) is expected


# (case id, Subject, body, sensitive)
SUBJECT_MESSAGE_CASES = [
    ("clinical body", "Re: Harold Vance", "Biopsy shows invasive ductal carcinoma.", True),
    ("lab value body", "FW: Brenda Castellano", "Her INR is 4.2 today on warfarin 5 mg.", True),
    (
        "recruiting body",
        "Re: Talia Norcross - RN candidate",
        "Talia has oncology experience, including chemotherapy administration.",
        False,
    ),
    ("ordinary subject", "Re: Budget review", "Biopsy shows invasive ductal carcinoma.", False),
]


@pytest.mark.parametrize(
    ("subject", "body", "sensitive"),
    [case[1:] for case in SUBJECT_MESSAGE_CASES],
    ids=[case[0] for case in SUBJECT_MESSAGE_CASES],
)
def test_subject_name_with_body(
    detector: Detector, subject: str, body: str, sensitive: bool
) -> None:
    raw = f"Subject: {subject}\r\nMIME-Version: 1.0\r\n\r\n{body}\r\n".encode()
    assert detector.scan_message(raw).sensitive is sensitive


def test_clinical_context_weighs_nothing(detector: Detector) -> None:
    verdict = detector.scan_text("Patient: Maria Garcia. hx of, 5 mg bid, 124 mmol/L")
    assert verdict.categories.get("clinical_context", 0) >= 1
    assert verdict.sensitive is False


LIST_TEXT = (
    "Eli Vasquez: peanut anaphylaxis\n"
    "- Ana Li (asthma)\n"
    "Budget: none\n"
    "\u2022 Vasquez-Ruiz, Ana \u2013 COPD\n"
    "Bo Ek - metformin"
)


def test_list_rows_from_whole_text() -> None:
    """Rows picked from the whole text's rows are those of a search of the span."""
    # Only the two attributes that the functions read.
    state: Any = SimpleNamespace(text=LIST_TEXT, list_rows=None)
    assert len(whole_text_list_rows(state)) == 4
    for start in range(len(LIST_TEXT) + 1):
        for end in range(start, len(LIST_TEXT) + 1):
            expected = [row.span() for row in find_list_rows(LIST_TEXT, start, end)]
            picked = [row.span() for row in _list_rows_in(state, start, end)]
            assert picked == expected, (start, end)


def test_by_first_letter_groups_alternatives() -> None:
    assert _by_first_letter("rest|role|sales") == "r(?:est|ole)|s(?:ales)"
    assert _by_first_letter("won(?!['x|])|wit") == "w(?:on(?!['x|])|it)"
    with pytest.raises(ValueError):
        _by_first_letter("a?b|c")


TOPIC_TEXTS = [
    "she won't be speaking at the conference about her diabetes",
    "he won the playoffs after his concussion",
    "her talk show appearance and his memoir",
    "the build queue stalled; stanley had a heart attack",
    "speakers, speaker's notes and a transfer window",
]


def test_topic_matches_plain_alternation() -> None:
    plain = re.compile(r"\b(?:" + _TOPIC_WORDS + r")\b")
    for text in TOPIC_TEXTS:
        expected = [match.span() for match in plain.finditer(text)]
        assert expected
        assert [match.span() for match in TOPIC.finditer(text)] == expected
