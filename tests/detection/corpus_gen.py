"""Generate the labelled PHI evaluation corpus: synthetic .eml files and labels.json.

Every value is synthetic: names come from short lists, identifiers are generated to
pass (or, for traps, to fail) their validators. The same seed gives the same bytes.

    python tests/detection/corpus_gen.py OUTDIR [--seed 2026] [--count 600]

labels.json maps each file name to ``{"sensitive": bool, "shape": str,
"categories": [category, ...]}``. ``categories`` lists what the generator put in on
purpose and the detector is expected to report; the evaluation compares it per
category.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import random
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Daniel", "Priya", "Carlos", "Fatima",
         "Thomas", "Grace", "Mohammed", "Elena", "Kevin", "Sofia", "Liam", "Hannah", "Jorge",
         "Mei", "Samuel", "Chloe", "Andre", "Nadia", "Patrick", "Yuki", "Ruth", "Omar"]  # fmt: skip
LAST = ["Garcia", "Smith", "Okafor", "Chen", "Ivanova", "Murphy", "Patel", "Rodriguez",
        "Haddad", "Nguyen", "Kowalski", "Johnson", "Brennan", "Schmidt", "Tanaka", "Adeyemi",
        "Lindqvist", "Moreau", "Kim", "O'Neill", "Fischer", "Alvarez", "Novak", "Bianchi"]  # fmt: skip
CLINICS = ["Riverside Family Medicine", "Northgate Medical Group", "Lakeview Pediatrics",
           "St. Brigid Hospital", "Harbor Dermatology", "Cedar Hills Cardiology",
           "Maple Street Clinic", "Summit Oncology Center"]  # fmt: skip
PHARMACIES = ["Main Street Pharmacy", "CareWell Pharmacy", "Elm Drugs", "Westside Pharmacy"]
CONDITIONS = [("type 2 diabetes", "E11.9"), ("hypertension", "I10"), ("asthma", "J45.909"),
              ("major depressive disorder", "F32.9"), ("hypothyroidism", "E03.9"),
              ("chronic kidney disease", "N18.30"), ("atrial fibrillation", "I48.91"),
              ("osteoarthritis", "M17.11"), ("hyperlipidemia", "E78.5"), ("COPD", "J44.9"),
              ("migraine", "G43.909"), ("generalized anxiety disorder", "F41.1"),
              ("breast cancer", "C50.911"), ("pneumonia", "J18.9"),
              ("urinary tract infection", "N39.0"), ("sleep apnea", "G47.33")]  # fmt: skip
MEDS = ["metformin 500 mg", "lisinopril 10 mg", "atorvastatin 20 mg", "levothyroxine 50 mcg",
        "sertraline 50 mg", "amlodipine 5 mg", "albuterol inhaler", "omeprazole 20 mg",
        "apixaban 5 mg", "gabapentin 300 mg", "losartan 50 mg", "insulin glargine"]  # fmt: skip
CPT = ["99213", "99214", "99203", "36415", "80053", "83036", "93000", "71046", "45378"]
HCPCS = ["G0439", "J1885", "A4253", "E0607"]
LABS = [("HbA1c", "8.1 %"), ("LDL cholesterol", "162 mg/dL"), ("TSH level", "6.2 mIU/L"),
        ("creatinine", "1.6 mg/dL"), ("fasting glucose", "131 mg/dL"), ("hemoglobin", "10.9 g/dL")]  # fmt: skip
STATES = [("Springfield", "IL", "627"), ("Columbus", "OH", "432"), ("Tacoma", "WA", "984"),
          ("Albany", "NY", "122"), ("Austin", "TX", "787"), ("Madison", "WI", "537")]  # fmt: skip
STREETS = ["Oak St", "Maple Avenue", "Pine Rd", "Cedar Lane", "Elm Street", "Lakeshore Blvd"]
COMPANIES = ["Acme Logistics", "Brightline Software", "Northwind Traders", "Globex Supplies",
             "Initech Consulting", "Vandelay Industries", "Summit Office Furniture"]  # fmt: skip


@dataclass
class Sample:
    subject: str
    body: str
    sensitive: bool
    shape: str
    categories: set[str] = field(default_factory=set)
    html: bool = False
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    forward: bool = False


# -- identifiers -------------------------------------------------------------------------


def luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        candidate = body + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        group = rng.randint(1, 99)
        serial = rng.randint(1, 9999)
        value = f"{area:03d}{group:02d}{serial:04d}"
        if value not in ("078051120", "219099999", "123456789"):
            return value


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(
        [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15), ("6011", 16)]
    )
    return luhn_complete(rng, prefix, length)


def format_card(number: str, rng: random.Random) -> str:
    separator = rng.choice([" ", "-"])
    if len(number) == 15:
        return separator.join([number[:4], number[4:10], number[10:]])
    return separator.join(number[i : i + 4] for i in range(0, 16, 4))


MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"


def mbi(rng: random.Random, hyphens: bool) -> str:
    alnum = MBI_LETTERS + "0123456789"
    chars = [
        rng.choice("123456789"), rng.choice(MBI_LETTERS), rng.choice(alnum), rng.choice("0123456789"),
        rng.choice(MBI_LETTERS), rng.choice(alnum), rng.choice("0123456789"),
        rng.choice(MBI_LETTERS), rng.choice(MBI_LETTERS), rng.choice("0123456789"), rng.choice("0123456789"),
    ]  # fmt: skip
    value = "".join(chars)
    return f"{value[:4]}-{value[4:7]}-{value[7:]}" if hyphens else value


def npi(rng: random.Random) -> str:
    while True:
        body = rng.choice("12") + "".join(rng.choice("0123456789") for _ in range(8))
        full = luhn_complete(rng, "80840" + body, 15)
        return full[5:]


def dea(rng: random.Random) -> str:
    letters = rng.choice("ABFM") + rng.choice("ABCDEFGHJKLMNPRSTW")
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return letters + "".join(map(str, d)) + str(check)


def mrn(rng: random.Random) -> str:
    return rng.choice(["", "", "M", "MR"]) + "".join(
        rng.choice("0123456789") for _ in range(rng.choice([7, 8, 9]))
    )


def member_id(rng: random.Random) -> str:
    return rng.choice(["XQ", "W", "ZGP", "H"]) + "".join(rng.choice("0123456789") for _ in range(9))


def birth_date(rng: random.Random) -> datetime.date:
    return datetime.date(1930, 1, 1) + datetime.timedelta(days=rng.randint(0, 365 * 75))


def format_date(day: datetime.date, rng: random.Random) -> str:
    style = rng.choice(["us", "iso", "long", "short"])
    if style == "us":
        return day.strftime("%m/%d/%Y")
    if style == "iso":
        return day.isoformat()
    if style == "long":
        return f"{day.strftime('%B')} {day.day}, {day.year}"
    return f"{day.day} {day.strftime('%b')} {day.year}"


def future_date(rng: random.Random) -> datetime.date:
    return datetime.date(2026, 1, 5) + datetime.timedelta(days=rng.randint(0, 300))


def person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def phone(rng: random.Random) -> str:
    return f"({rng.randint(201, 989)}) {rng.randint(200, 989)}-{rng.randint(0, 9999):04d}"


def zip_code(rng: random.Random) -> tuple[str, str, str]:
    city, state, prefix = rng.choice(STATES)
    return city, state, f"{prefix}{rng.randint(0, 99):02d}"


def signature(rng: random.Random, org: str) -> str:
    first, last = person(rng)
    city, state, zipc = zip_code(rng)
    return (
        f"\n\n--\n{first} {last}\n{org}\n{rng.randint(10, 9999)} {rng.choice(STREETS)}, "
        f"{city}, {state} {zipc}\nPhone: {phone(rng)} | Fax: {phone(rng)}\n"
    )


# -- sensitive shapes ---------------------------------------------------------------------


def appointment_reminder(rng: random.Random) -> Sample:
    first, _ = person(rng)
    _, doctor = person(rng)
    clinic = rng.choice(CLINICS)
    when = future_date(rng)
    hour = rng.choice(["8:30 AM", "10:15 AM", "1:40 PM", "3:00 PM"])
    variant = rng.randint(0, 2)
    if variant == 0:
        body = (
            f"Dear {first},\n\nThis is a reminder of your appointment with Dr. {doctor} on "
            f"{when.strftime('%A, %B')} {when.day} at {hour} at {clinic}.\n"
            "Please arrive 15 minutes early and bring your insurance card.\n"
            "To cancel or reschedule, reply to this message or call the front desk."
        )
    elif variant == 1:
        body = (
            f"Hello {first},\n\nYour upcoming visit with Dr. {doctor} is confirmed for "
            f"{when.strftime('%m/%d/%Y')} at {hour}.\nLocation: {clinic}\n\nThank you."
        )
    else:
        body = (
            f"Hi {first}, reminder: your appointment on {when.strftime('%a %b')} {when.day} at {hour} "
            f"at {clinic}. Reply C to confirm."
        )
    return Sample(
        "Appointment reminder",
        body + signature(rng, clinic),
        True,
        "appointment_reminder",
        {"recipient_health"},
    )


def refill_reminder(rng: random.Random) -> Sample:
    first, _ = person(rng)
    med = rng.choice(MEDS)
    pharmacy = rng.choice(PHARMACIES)
    variant = rng.randint(0, 2)
    if variant == 0:
        body = f"Hi {first},\n\nYour prescription for {med} is ready for pickup at {pharmacy}."
    elif variant == 1:
        body = f"{first}, refill reminder: you are due for a refill of {med}. Reply YES to refill."
    else:
        body = f"Dear {first},\nYour refill request for {med} has been approved by your doctor."
    return Sample(
        "Your prescription",
        body + signature(rng, pharmacy),
        True,
        "refill_reminder",
        {"recipient_health", "medication"},
    )


def lab_ready(rng: random.Random) -> Sample:
    first, _ = person(rng)
    clinic = rng.choice(CLINICS)
    kind = rng.choice(["lab", "blood test", "imaging", "pathology"])
    body = (
        f"Dear {first},\n\nYour {kind} results are now available. Sign in to the {clinic} "
        "patient portal to view them. If you have questions, message your care team."
    )
    categories = (
        {"recipient_health", "lab_result"}
        if kind in ("lab", "blood test")
        else {"recipient_health"}
    )
    return Sample(
        "New results available",
        body + signature(rng, clinic),
        True,
        "lab_ready",
        categories,
        html=rng.random() < 0.4,
    )


def referral_letter(rng: random.Random) -> Sample:
    first, last = person(rng)
    _, doctor = person(rng)
    condition, code = rng.choice(CONDITIONS)
    med = rng.choice(MEDS)
    dob = format_date(birth_date(rng), rng)
    body = (
        f"Dr. {doctor},\n\nI am referring our patient {first} {last} (DOB: {dob}, MRN {mrn(rng)}) "
        f"for evaluation of {condition} (ICD-10 {code}). Current medications include {med}. "
        "Recent notes and imaging are attached to the EHR referral.\n\nThank you,\n"
    )
    return Sample(
        f"Referral: {last}",
        body + signature(rng, rng.choice(CLINICS)),
        True,
        "referral_letter",
        {"patient_name", "date_of_birth", "mrn", "condition", "diagnosis_code", "medication"},
    )


def billing_question(rng: random.Random) -> Sample:
    first, last = person(rng)
    cpt = rng.choice(CPT)
    account = "".join(rng.choice("0123456789") for _ in range(8))
    member = member_id(rng)
    variant = rng.randint(0, 1)
    if variant == 0:
        body = (
            f"Hello billing team,\n\nThe claim for patient account number {account} was denied. "
            f"Date of service {format_date(future_date(rng), rng)}, CPT {cpt}. "
            f"The member ID on file is {member}. Can you resubmit with the corrected modifier?"
        )
        categories = {"account_number", "procedure_code", "member_id"}
    else:
        body = (
            f"Hi,\n\n{first} {last} called about her statement. Acct # {account}, billed code "
            f"{cpt} and {rng.choice(CPT)}. Insurance ID {member}. She says the visit for "
            f"{rng.choice(CONDITIONS)[0]} should have been covered."
        )
        categories = {"account_number", "procedure_code", "member_id", "condition"}
    return Sample(
        "Claim question",
        body + signature(rng, "Billing Office"),
        True,
        "billing_question",
        categories,
    )


def ehr_notification(rng: random.Random) -> Sample:
    first, last = person(rng)
    lab, value = rng.choice(LABS)
    body = (
        f"EHR notification\n\nNew result for patient: {last}, {first}\nMRN: {mrn(rng)}\n"
        f"Test: {lab}\nValue: {value} (abnormal)\nOrdering provider: Dr. {rng.choice(LAST)}\n"
        "Log in to review and sign."
    )
    return Sample(
        "Result to review", body, True, "ehr_notification", {"patient_name", "mrn", "lab_result"}
    )


def patient_rows(rng: random.Random, count: int) -> tuple[list[str], list[list[str]]]:
    header = ["MRN", "Patient Name", "DOB", "Diagnosis", "ICD-10", "Phone"]
    rows = []
    for _ in range(count):
        first, last = person(rng)
        condition, code = rng.choice(CONDITIONS)
        rows.append(
            [
                mrn(rng),
                f"{last}, {first}",
                birth_date(rng).strftime("%m/%d/%Y"),
                condition,
                code,
                phone(rng),
            ]
        )
    return header, rows


def patient_spreadsheet(rng: random.Random) -> Sample:
    header, rows = patient_rows(rng, rng.randint(3, 12))
    kind = rng.choice(["csv", "tsv", "xlsx"])
    if kind == "xlsx":
        data = make_xlsx(header, rows)
        attachment = (
            "patients.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            data,
        )
    else:
        delimiter = "," if kind == "csv" else "\t"
        lines = [delimiter.join(header)] + [
            delimiter.join(
                f'"{cell}"' if delimiter in cell or "," in cell else cell for cell in row
            )
            for row in rows
        ]
        mime = "text/csv" if kind == "csv" else "text/tab-separated-values"
        attachment = (f"export.{kind}", mime, ("\r\n".join(lines) + "\r\n").encode())
    body = "Hi,\n\nAttached is the follow-up list for next week. Please call each one to schedule.\n\nThanks"
    sample = Sample(
        "Follow-up list",
        body,
        True,
        "patient_spreadsheet",
        {"mrn", "patient_name", "date_of_birth", "condition", "diagnosis_code"},
    )
    sample.attachments.append(attachment)
    return sample


def intake_form_pdf(rng: random.Random) -> Sample:
    first, last = person(rng)
    condition, _ = rng.choice(CONDITIONS)
    number = ssn(rng)
    lines = [
        "NEW PATIENT INTAKE FORM",
        f"Patient Name: {first} {last}",
        f"Date of Birth: {birth_date(rng).strftime('%m/%d/%Y')}",
        f"SSN: {number[:3]}-{number[3:5]}-{number[5:]}",
        f"Insurance Member ID: {member_id(rng)}",
        f"Current conditions: {condition}",
        f"Medications: {rng.choice(MEDS)}",
        "Signature on file",
    ]
    sample = Sample("Scanned intake form", "Please see the scanned form attached.\n", True, "intake_form_pdf",
                    {"patient_name", "date_of_birth", "ssn", "member_id", "condition", "medication"})  # fmt: skip
    sample.attachments.append(("scan0001.pdf", "application/pdf", make_pdf(lines)))
    return sample


def referral_docx(rng: random.Random) -> Sample:
    first, last = person(rng)
    condition, code = rng.choice(CONDITIONS)
    paragraphs = [
        "Referral letter",
        f"Patient: {first} {last}",
        f"Date of birth: {format_date(birth_date(rng), rng)}",
        f"Diagnosis: {condition} (ICD-10 {code}).",
        f"Current medication: {rng.choice(MEDS)}.",
    ]
    sample = Sample("Referral letter attached", "Referral attached for your review.\n", True, "referral_docx",
                    {"patient_name", "date_of_birth", "condition", "diagnosis_code", "medication"})  # fmt: skip
    sample.attachments.append(
        (
            "referral.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            make_docx(paragraphs),
        )
    )
    return sample


def ssn_message(rng: random.Random) -> Sample:
    first, last = person(rng)
    number = ssn(rng)
    style = rng.randint(0, 2)
    if style == 0:
        written = f"SSN {number[:3]}-{number[3:5]}-{number[5:]}"
    elif style == 1:
        written = f"social security number {number}"
    else:
        written = f"SSN: {number[:3]} {number[3:5]} {number[5:]}"
    body = f"Hi,\n\nFor the eligibility check on {first} {last}, the {written} was on the form.\nThanks"
    return Sample(
        "Eligibility check", body + signature(rng, rng.choice(CLINICS)), True, "ssn", {"ssn"}
    )


def card_message(rng: random.Random) -> Sample:
    number = card(rng)
    if rng.random() < 0.6:
        written = f"card number {format_card(number, rng)}"
    else:
        written = f"Visa/MC card: {number}" if rng.random() < 0.5 else f"credit card {number}"
    body = (
        f"Hello,\n\nPlease charge the outstanding balance of ${rng.randint(20, 900)}.{rng.randint(10, 99)} "
        f"to my {written}, expiry {rng.randint(1, 12):02d}/{rng.randint(27, 31)}.\n\nThank you"
    )
    return Sample("Payment for my bill", body, True, "payment_card", {"payment_card"})


def medicare_message(rng: random.Random) -> Sample:
    first, last = person(rng)
    body = (
        f"Eligibility request for {first} {last}. Medicare MBI {mbi(rng, rng.random() < 0.5)}. "
        "Please confirm Part B coverage before the visit."
    )
    return Sample("Medicare eligibility", body, True, "mbi", {"mbi"})


def forwarded_phi(rng: random.Random) -> Sample:
    inner = rng.choice([referral_letter, ehr_notification, billing_question])(rng)
    inner.forward = True
    inner.shape = "forwarded_" + inner.shape
    return inner


def clinician_chat(rng: random.Random) -> Sample:
    first, last = person(rng)
    _, colleague = person(rng)
    lab, value = rng.choice(LABS)
    dob = birth_date(rng)
    label = rng.choice(["DOB", "dob", "D.O.B.", "born"])
    written = dob.strftime("%m/%d/%y") if rng.random() < 0.5 else format_date(dob, rng)
    med = rng.choice(MEDS).split()[0]
    body = (
        f"Hi Dr. {colleague},\n\nquick question about {rng.choice(['Mr.', 'Ms.'])} {last} ({label} {written}) - "
        f"{lab} came back at {value}. I'd like to start {med}, any concerns?\n\nThanks"
    )
    return Sample(
        f"Re: {last}", body, True, "clinician_chat", {"date_of_birth", "lab_result", "medication"}
    )


def prior_authorization(rng: random.Random) -> Sample:
    condition, code = rng.choice(CONDITIONS)
    ndc = f"{rng.randint(10000, 99999)}-{rng.randint(100, 999)}-{rng.randint(10, 99)}"
    label = rng.choice(["Member ID", "Subscriber ID", "Member #", "Policy number"])
    body = (
        f"Prior authorization request\n{label}: {member_id(rng)}\n"
        f"Drug: NDC {ndc}, {rng.choice(MEDS)}\nDiagnosis: {condition}, ICD-10 {code}\n"
        "Please fax the determination to the number on file."
    )
    return Sample("Prior authorization", body, True, "prior_authorization",
                  {"member_id", "ndc", "medication", "condition", "diagnosis_code"})  # fmt: skip


def results_explained(rng: random.Random) -> Sample:
    first, _ = person(rng)
    _, doctor = person(rng)
    kind = rng.choice(["cholesterol", "A1c", "blood work", "biopsy", "mammogram"])
    verb = rng.choice(["Your recent", "Your", "Your latest"])
    body = (
        f"Hi {first},\n\n{verb} {kind} results are back and look {rng.choice(['normal', 'stable', 'a little high'])}. "
        f"Dr. {doctor} would like to see you in three months.\n\nTake care"
    )
    categories = {"recipient_health"}
    if kind in ("cholesterol", "A1c", "blood work"):
        categories.add("lab_result")
    return Sample("About your results", body, True, "results_explained", categories)


SENSITIVE: list[tuple[Callable[[random.Random], Sample], int]] = [
    (appointment_reminder, 14), (refill_reminder, 12), (lab_ready, 10), (referral_letter, 12),
    (billing_question, 10), (ehr_notification, 10), (patient_spreadsheet, 10), (intake_form_pdf, 6),
    (referral_docx, 5), (ssn_message, 6), (card_message, 5), (medicare_message, 4), (forwarded_phi, 6),
    (clinician_chat, 6), (prior_authorization, 5), (results_explained, 6),
]  # fmt: skip


# -- ordinary mail full of traps ----------------------------------------------------------


def order_confirmation(rng: random.Random) -> Sample:
    company = rng.choice(COMPANIES)
    epoch_ms = luhn_complete(rng, "17", 13)
    body = (
        f"Thank you for your order ORD-{rng.randint(2023, 2026)}-{rng.randint(100000, 999999)}.\n"
        f"Invoice INV-{rng.randint(10000000, 99999999)} is attached. Tracking: 1Z{rng.randint(100, 999)}"
        f"AA1{rng.randint(100000000, 999999999)}. FedEx {rng.randint(100000000000, 999999999999)}.\n"
        f"Order reference {rng.randint(100000000, 999999999)}, placed at {epoch_ms} (ms since epoch).\n"
        f"Total: ${rng.randint(100, 9999)}.{rng.randint(10, 99)}; your account number {rng.randint(1000000, 9999999)}."
    )
    return Sample(
        "Order confirmation",
        body + signature(rng, company),
        False,
        "order_confirmation",
        {"account_number"},
    )


def it_notification(rng: random.Random) -> Sample:
    guid = "-".join(
        "".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
    )
    digit_guid = "-".join(
        "".join(rng.choice("0123456789") for _ in range(n)) for n in (8, 4, 4, 4, 12)
    )
    body = (
        f"Build {rng.randint(1000, 9999)} of service v{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} "
        f"finished at 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:14:07Z.\n"
        f"Request id {guid}\nTrace {digit_guid}\nEvent time {luhn_complete(rng, '17', 13)}\n"
        f"Your test results are ready: {rng.randint(200, 900)} passed, {rng.randint(0, 5)} failed.\n"
        f"Ticket #{rng.randint(10000, 99999)} was updated. Duplicate license key detected for seat {rng.randint(10, 99)}.\n"
        f"Windows build 10.0.{rng.randint(17000, 22000)}.{rng.randint(100, 999)}"
    )
    return Sample("CI report", body, False, "it_notification")


def health_newsletter(rng: random.Random) -> Sample:
    condition, _ = rng.choice(CONDITIONS)
    clinic = rng.choice(CLINICS)
    body = (
        f"{clinic} newsletter\n\nFlu shots are available this week at all locations, no appointment needed. "
        f"November is awareness month for {condition}: learn the warning signs and talk to your doctor "
        "about screening. Our new cardiology wing opens in spring.\n"
        f"Read more on our website. To unsubscribe reply STOP."
    )
    return Sample(
        "Health news",
        body + signature(rng, clinic),
        False,
        "health_newsletter",
        {"condition", "care_setting"},
        html=rng.random() < 0.5,
    )


def clinician_update(rng: random.Random) -> Sample:
    _, doctor = person(rng)
    body = (
        f"Provider directory update: Dr. {doctor} joined {rng.choice(CLINICS)}. NPI {npi(rng)}, "
        f"DEA {dea(rng)}. Accepting referrals for consultation from Monday. Please update the "
        "credentialing file."
    )
    return Sample(
        "Directory update",
        body + signature(rng, "Credentialing"),
        False,
        "clinician_update",
        {"clinician_id", "care_setting"},
    )


def spreadsheet_finance(rng: random.Random) -> Sample:
    body = (
        f"Hi,\n\nThe totals in cell B12 and C50 of the Q{rng.randint(1, 4)} sheet do not match row A15. "
        f"Account number {rng.randint(10000000, 99999999)} shows ${rng.randint(1000, 90000)}.{rng.randint(10, 99)}.\n"
        f"Wire to IBAN DE89 3704 0044 0532 0130 00, reference {rng.randint(1000, 9999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}."
    )
    header = ["SKU", "Description", "Qty", "Unit price", "Order id"]
    rows = [[f"SKU-{rng.randint(1000, 9999)}", rng.choice(["Chair", "Desk", "Lamp", "Monitor arm"]),
             str(rng.randint(1, 40)), f"{rng.randint(10, 400)}.{rng.randint(10, 99)}", str(rng.randint(100000000, 999999999))]
            for _ in range(rng.randint(4, 10))]  # fmt: skip
    sample = Sample(
        "Q totals",
        body + signature(rng, rng.choice(COMPANIES)),
        False,
        "spreadsheet_finance",
        {"account_number", "iban"},
    )
    if rng.random() < 0.5:
        sample.attachments.append(
            (
                "inventory.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                make_xlsx(header, rows),
            )
        )
    else:
        csv_text = "\r\n".join(",".join(row) for row in [header] + rows) + "\r\n"
        sample.attachments.append(("inventory.csv", "text/csv", csv_text.encode()))
    return sample


def business_meeting(rng: random.Random) -> Sample:
    first, _ = person(rng)
    city, state, zipc = zip_code(rng)
    body = (
        f"Hi {first},\n\nConfirming your appointment with our sales team on Tuesday at 10:00. "
        f"Dial-in: {phone(rng)}, conference ID {rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(100, 999)}. "
        f"Our office moved to {rng.randint(10, 999)} {rng.choice(STREETS)}, {city}, {state} {zipc}. "
        f"Use visitor code {rng.randint(10000, 99999)}; parking lot {rng.choice('ABC')}{rng.randint(10, 30)}."
    )
    return Sample(
        "Meeting Tuesday", body + signature(rng, rng.choice(COMPANIES)), False, "business_meeting"
    )


def supply_invoice(rng: random.Random) -> Sample:
    city, state, zipc = zip_code(rng)
    body = (
        f"Invoice {rng.randint(100000, 999999)} for {rng.choice(CLINICS)}\n"
        f"Nitrile gloves (box of 100) x {rng.randint(5, 50)}\nAlcohol swabs x {rng.randint(5, 50)}\n"
        f"Sharps containers x {rng.randint(1, 10)}\nShip to: Receiving dock, {city}, {state} {zipc}\n"
        f"Customer account number {rng.randint(100000, 999999)}. Payment terms net 30. "
        f"Remit to PO Box {rng.randint(1000, 9999)}, {city}, {state} {zipc}."
    )
    return Sample("Invoice", body, False, "supply_invoice", {"account_number", "care_setting"})


def invoice_pdf(rng: random.Random) -> Sample:
    lines = [
        f"INVOICE {rng.randint(100000, 999999)}",
        f"Customer: {rng.choice(COMPANIES)}",
        f"Date: {future_date(rng).isoformat()}",
        f"Item SKU-{rng.randint(1000, 9999)} qty {rng.randint(1, 9)} total {rng.randint(100, 999)}.00",
        f"Tax id {rng.randint(10, 99)}-{rng.randint(1000000, 9999999)}",
    ]
    sample = Sample("Invoice attached", "Please find the invoice attached.\n", False, "invoice_pdf")
    sample.attachments.append(("invoice.pdf", "application/pdf", make_pdf(lines)))
    return sample


def hr_benefits(rng: random.Random) -> Sample:
    body = (
        "Open enrollment for the health plan starts Monday. Compare plan options, dental and "
        f"vision coverage in the benefits portal. Employee id {rng.randint(10000, 99999)} is your login. "
        f"Questions? Call HR at {phone(rng)}. Deadline: {future_date(rng).strftime('%B %d')}."
    )
    return Sample(
        "Open enrollment",
        body,
        False,
        "hr_benefits",
        {"care_setting"} if "dental" in body else set(),
    )


def random_numbers(rng: random.Random) -> Sample:
    values = []
    for _ in range(rng.randint(5, 15)):
        kind = rng.randint(0, 5)
        if kind == 0:
            values.append(
                f"{rng.randint(900, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
            )
        elif kind == 1:
            values.append("078-05-1120")
        elif kind == 2:
            values.append(str(rng.randint(10**15, 10**16 - 1)))
        elif kind == 3:
            values.append(f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}")
        elif kind == 4:
            values.append(f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}")
        else:
            values.append(f"{zip_code(rng)[1]} {zip_code(rng)[2]}")
    body = (
        "Reconciliation notes (employee reference numbers, sample values from the training "
        "deck and batch ids):\n" + "\n".join(f"- {value}" for value in values)
    )
    return Sample(
        "Batch ids", body + signature(rng, rng.choice(COMPANIES)), False, "random_numbers"
    )


def quarterly_results(rng: random.Random) -> Sample:
    body = (
        f"Team,\n\nThe Q{rng.randint(1, 4)} results are ready. Revenue grew {rng.randint(2, 30)}% and the "
        f"test results of the new checkout flow are in: conversion {rng.randint(1, 9)}.{rng.randint(0, 9)}%. "
        f"Your appointment with the auditors is scheduled for {future_date(rng).strftime('%B %d')}. "
        f"Employee reference {rng.randint(100000000, 999999999)} approved the budget.\n"
    )
    return Sample(
        "Quarterly results",
        body + signature(rng, rng.choice(COMPANIES)),
        False,
        "quarterly_results",
    )


def health_webinar(rng: random.Random) -> Sample:
    condition, _ = rng.choice(CONDITIONS)
    _, doctor = person(rng)
    body = (
        f"Join our lunchtime webinar on living with {condition}. Dr. {doctor} of "
        f"{rng.choice(CLINICS)} explains treatment options and answers questions. "
        f"Register with code {rng.randint(100000, 999999)} before {future_date(rng).strftime('%B %d')}. "
        "Your visit to our booth at the health fair is welcome too."
    )
    return Sample("Webinar invitation", body + signature(rng, "Wellness Program"), False, "health_webinar",
                  {"condition", "care_setting"})  # fmt: skip


def release_notes(rng: random.Random) -> Sample:
    body = (
        f"Release {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)} is out.\n"
        f"- Fixed duplicate license check for seats above {rng.randint(100, 999)}\n"
        f"- Record id format is now {rng.choice('ABCDEF')}{rng.randint(1000000, 9999999)}\n"
        f"- Patient zero of the memory leak was commit {''.join(rng.choice('0123456789abcdef') for _ in range(7))}\n"
        f"- Default port changed to {rng.randint(1024, 65535)}; see cell C{rng.randint(10, 99)} of the matrix\n"
    )
    return Sample("Release notes", body, False, "release_notes")


NEGATIVE: list[tuple[Callable[[random.Random], Sample], int]] = [
    (order_confirmation, 16), (it_notification, 14), (health_newsletter, 14), (clinician_update, 10),
    (spreadsheet_finance, 12), (business_meeting, 12), (supply_invoice, 8), (invoice_pdf, 6),
    (hr_benefits, 8), (random_numbers, 10), (quarterly_results, 6), (health_webinar, 6),
    (release_notes, 6),
]  # fmt: skip


# -- attachments --------------------------------------------------------------------------


def make_pdf(lines: list[str]) -> bytes:
    """Build a one-page PDF whose text layer contains ``lines`` (what a scanner with OCR emits)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = (
        "BT /F1 11 Tf 72 740 Td 14 TL\n"
        + "".join(f"({escape(line)}) Tj T*\n" for line in lines)
        + "ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def _fixed_zip(files: dict[str, str]) -> bytes:
    # A fixed timestamp keeps the archive bytes the same for the same seed.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return out.getvalue()


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def make_docx(paragraphs: list[str]) -> bytes:
    """Build a minimal DOCX package (the parts python-docx needs) with one run per paragraph."""
    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{_xml_escape(p)}</w:t></w:r></w:p>'
        for p in paragraphs
    )
    return _fixed_zip({
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            "</Relationships>"
        ),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>"
        ),
    })  # fmt: skip


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        name = chr(65 + remainder) + name
    return name


def make_xlsx(header: list[str], rows: list[list[str]]) -> bytes:
    """Build a minimal XLSX workbook with inline strings, one sheet."""
    xml_rows = []
    for row_number, row in enumerate([header] + rows, start=1):
        cells = "".join(
            f'<c r="{_column(index)}{row_number}" t="inlineStr"><is><t>{_xml_escape(value)}</t></is></c>'
            for index, value in enumerate(row)
        )
        xml_rows.append(f'<row r="{row_number}">{cells}</row>')
    return _fixed_zip({
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/sheet1.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"<sheetData>{''.join(xml_rows)}</sheetData></worksheet>"
        ),
    })  # fmt: skip


# -- messages -----------------------------------------------------------------------------


def to_html(text: str) -> str:
    paragraphs = "".join(
        f"<p>{_xml_escape(block).replace(chr(10), '<br>')}</p>" for block in text.split("\n\n")
    )
    return f"<html><head><style>p {{ margin: 0 }}</style></head><body>{paragraphs}</body></html>"


def build_message(sample: Sample, rng: random.Random, index: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"sender{index}@example.org"
    message["To"] = f"recipient{index}@example.net"
    message["Subject"] = sample.subject
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = f"<corpus-{index}@example.org>"

    charset = rng.choice(["utf-8", "utf-8", "iso-8859-1"])
    encoding = rng.choice(["quoted-printable", "base64", "8bit"])
    message.set_content(sample.body, charset=charset, cte=encoding)

    if sample.html:
        message.add_alternative(to_html(sample.body), subtype="html")
    for filename, mime, data in sample.attachments:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)

    if sample.forward:
        outer = EmailMessage()
        outer["From"] = f"forwarder{index}@example.org"
        outer["To"] = f"recipient{index}@example.net"
        outer["Subject"] = f"Fwd: {sample.subject}"
        outer["Date"] = "Fri, 04 Dec 2026 11:00:00 +0000"
        outer["Message-ID"] = f"<corpus-fwd-{index}@example.org>"
        outer.set_content("See the forwarded message below.\n")
        outer.add_attachment(message, disposition="inline")
        message = outer

    # The email package picks random MIME boundaries, so fixed ones keep the bytes
    # reproducible from the seed.
    for number, part in enumerate(message.walk()):
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"=_corpus_{index}_{number}")
    return message.as_bytes(policy=SMTP)


def _pick(
    rng: random.Random, table: list[tuple[Callable[[random.Random], Sample], int]]
) -> Callable[[random.Random], Sample]:
    makers = [maker for maker, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(makers, weights)[0]


def generate(seed: int = 2026, count: int = 600) -> list[tuple[str, bytes, dict[str, object]]]:
    """Return ``count`` (file name, message bytes, label) triples, half of them sensitive."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        table = SENSITIVE if index % 2 == 0 else NEGATIVE
        sample = _pick(rng, table)(rng)
        raw = build_message(sample, rng, index)
        label = {
            "sensitive": sample.sensitive,
            "shape": sample.shape,
            "categories": sorted(sample.categories),
        }
        out.append((f"{index:04d}-{sample.shape}.eml", raw, label))
    return out


def write_corpus(directory: Path, seed: int = 2026, count: int = 600) -> Path:
    """Write the corpus and labels.json into ``directory``; return the labels path."""
    directory.mkdir(parents=True, exist_ok=True)
    labels = {}
    for name, raw, label in generate(seed, count):
        (directory / name).write_bytes(raw)
        labels[name] = label
    path = directory / "labels.json"
    path.write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic labelled PHI corpus.")
    parser.add_argument("directory", type=Path, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    parser.add_argument("--count", type=int, default=600, help="number of messages (default 600)")
    args = parser.parse_args(argv)
    path = write_corpus(args.directory, args.seed, args.count)
    print(f"wrote {args.count} messages and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
