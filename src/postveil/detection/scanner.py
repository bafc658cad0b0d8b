"""Find PHI candidates in plain text: validated identifiers, keywords and phrases.

The text is read by three fast passes, each in C: ``str.lower``, one Aho-Corasick
pass over every keyword list (which also notes the first digit), and one regular
expression, from that digit on, that finds runs of digits and the letters glued to
them. Python code then runs only at those runs and keyword
hits, so ordinary prose costs little beyond the three passes.
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections.abc import KeysView
from dataclasses import dataclass

from postveil.detection import validators as v
from postveil.detection.clinical import (
    LAB_PRODUCT_AFTER,
    scan_clinical_cues,
    scan_lab_values,
    scan_medication_ties,
    scan_short_lab_values,
)
from postveil.detection.keywords import MAX_HITS, KeywordHits, KeywordMatcher, lower_same_length
from postveil.detection.owncare import OWN_CARE_GROUPS, is_head, scan_own_care
from postveil.detection.people import (
    health_span,
    is_clinician,
    scan_people,
    whole_text_list_rows,
)
from postveil.detection.sentences import TIED_CATEGORIES, has_given_name, sentence_candidates


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected item. Offsets are for internal use (tests, debugging) and must
    never be used to copy the matched text into logs or audit records.

    ``confidence`` is between 0 and 1. For ``recipient_health`` it is the phrase's
    weight in the recipient-health rule."""

    category: str
    start: int
    end: int
    confidence: float


def _finding_maker():  # type: ignore[no-untyped-def]
    """Return a function that makes a ``Finding`` by setting its four slots directly.

    The frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    which took 0.5 µs against 0.3 µs per ``Finding`` (CPython 3.11, timeit), and the
    scanner makes one per finding. The result compares, hashes and prints like one
    made by ``Finding(...)``."""
    new = object.__new__
    slots = vars(Finding)
    set_category = slots["category"].__set__
    set_start = slots["start"].__set__
    set_end = slots["end"].__set__
    set_confidence = slots["confidence"].__set__

    def make(category: str, start: int, end: int, confidence: float) -> Finding:
        finding = new(Finding)
        set_category(finding, category)
        set_start(finding, start)
        set_end(finding, end)
        set_confidence(finding, confidence)
        return finding

    return make


_make_finding = _finding_maker()


@dataclass(frozen=True)
class CustomRule:
    """A compiled organisation-specific identifier."""

    name: str
    pattern: re.Pattern[str]
    keywords: KeywordMatcher | None


# A run of digits with letters glued to it, continued across single separators: a
# hyphen, slash or dot followed by letters or digits, or a space followed by a digit.
# It starts at a digit so the regex engine skips prose quickly. A lone token shorter
# than five characters ("10", "2026", "4pm") cannot be an identifier, so it is not
# matched at all. The short codes that can be one (I10, G0439) need a keyword anyway,
# so they are looked for after their keywords instead.
_CHAIN_PATTERN = (
    r"[0-9][0-9A-Za-z]*(?:[-/.][0-9A-Za-z]+|[ ][0-9][0-9A-Za-z]*)+|[0-9][0-9A-Za-z]{4,}"
)
# Phone numbers and dates: the commonest chains in mail, and never an identifier by
# themselves (a date of birth is found from its keyword).
_PLAIN_CHAIN_PATTERN = (
    r"(?:[0-9]{3}[-. ])?[0-9]{3}[-. ][0-9]{4}|[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}"
)
# Both patterns in one, so that a plain chain costs no second regex call: group
# "plain" is _PLAIN_CHAIN_PATTERN followed by nothing that would extend the chain
# (a letter or digit, a separator and a letter or digit, a space and a digit). Every
# plain chain also matches _CHAIN_PATTERN at the same start, and both stop where
# nothing extends them, so the spans are those of _CHAIN_PATTERN. The first digit
# is written once outside the alternatives: the regex engine skips ahead to a digit
# only when the pattern starts with a character class.
# The repeat of separated groups is possessive (++). Nothing follows it, so the match
# is the same, but the engine keeps no backtracking state per group: with a greedy
# repeat, one line of 1 MB of "1234 1234 ..." took 39 MB of regex stack. The letters
# and digits before the first separator are possessive too (*+), because a separator
# can follow only their last one. That made the chain search 10% faster on the corpus.
_CHAIN = re.compile(
    r"[0-9](?:"
    r"(?P<plain>[0-9]{2}[-. ](?:[0-9]{3}[-. ])?[0-9]{4}|[0-9]{3}-[0-9]{2}-[0-9]{2}"
    r"|[0-9]?/[0-9]{1,2}/[0-9]{2,4})"
    r"(?![0-9A-Za-z]|[-/.][0-9A-Za-z]|[ ][0-9])"
    r"|[0-9A-Za-z]*+(?:[-/.][0-9A-Za-z]+|[ ][0-9][0-9A-Za-z]*)++|[0-9A-Za-z]{4,})"
)
# The rest of a group of letters and digits, then the separators after it.
_GROUP_REST = re.compile(r"[0-9A-Za-z]*[^0-9A-Za-z]*")
_SEPARATORS = re.compile(r"[^0-9A-Za-z]*")
# These two patterns read their first capital and then look behind it for a letter or
# digit, which is the same as looking before it. A pattern that starts with a
# character class lets a search skip to the characters of that class quickly.
_IBAN_BEFORE = re.compile(r"[A-Z](?<![0-9A-Za-z][A-Z])[A-Z][0-9]{2}(?: [A-Z0-9]{4}){0,6} $")
_SHORT_CODE = re.compile(r"[A-Z](?<![0-9A-Za-z][A-Z])[0-9][0-9A-Z]{1,3}(?![0-9A-Za-z.])")
# The characters that can end an IBAN group, so the only ones _IBAN_BEFORE accepts
# before its final space: a lower-case word before a number rules out the search.
_IBAN_GROUP_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?")
_CARD_GROUPED = re.compile(
    r"[0-9]{4}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,3})?"
    r"|[0-9]{4}(?P<t>[ -])[0-9]{6}(?P=t)[0-9]{4,5}"
)
_SSN_SEPARATED = re.compile(r"[0-9]{3}(?P<s>[- .])[0-9]{2}(?P=s)[0-9]{4}")
_NDC_HYPHENATED = re.compile(r"[0-9]{4,5}-[0-9]{3,4}-[0-9]{1,2}")
_DIGITS = re.compile(r"[0-9]+")
_ICD = re.compile(r"[A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4}|[0-9A-TV-Z]{1,4})?")
_HCPCS = re.compile(r"[A-V][0-9]{4}")
_CPT = re.compile(r"[0-9]{4}[0-9FTU]")
_DEA = re.compile(r"[A-Z][A-Z9][0-9]{7}")
# Two capital letters and a space or comma before five digits: a US state and ZIP code.
_STATE_BEFORE = re.compile(r"\b[A-Z]{2},?\s{1,3}$")

# An identifier after its label. The label may end in the full stop of an abbreviation
# ("Account no.:") and go on with "number", "No.", "id" or "#" in any case, a few filler
# words ("on file is") and a separator. An optional US state code comes next ("IL
# D452-7719-3081" for a driver's licence). The token has letters, digits and hyphens,
# with at most four letters before its first digit. The caller also requires 5 or more
# characters with 4 or more digits.
# NOTE: hospital numbers with slashes ("GHC/24/11873") and prefixes set off by a space
# ("BPH 7730418-02") are not read: in supplier, insurance and gym mail the same forms
# are policy and account references beside health words.
_LABELLED_ID = re.compile(
    r"\.?(?:\s*(?i:number|num|no\.?|id|#))?"
    r"(?:\s+(?:on file|on record|listed|provided|in (?:the )?system|we have))?"
    r"(?:\s*(?:(?:is|was|of)(?=\s)|[:#=\-])){0,2}\s*"
    r"(?P<state>[A-Z]{2}[ ](?=[A-Za-z]{0,2}[0-9]))?"
    r"(?P<id>[A-Za-z]{0,4}[-]?[0-9][0-9A-Za-z\-]{2,19})(?![0-9A-Za-z])"
)
_SHORT_LICENCE_LABELS = ("lic", "lic#", "lic #")
# A health number after its label: 10 digits, or 11 for an Australian Medicare card
# with the person's position, grouped by spaces or hyphens as cards print them ("943
# 476 5919", "2123 45670 1"), and an optional two-letter version code (Ontario).
_HEALTH_NUMBER = re.compile(
    r"\.?(?:\s*(?i:number|num|no\.?|#))?(?:\s*(?:(?:is|was)(?=\s)|[:#=\-])){0,2}\s*"
    r"(?P<id>[0-9](?:[ -]?[0-9]){9,10})(?![0-9])(?:[ -]?[A-Z]{2}(?![A-Za-z]))?"
)
_NUMERIC_DATE = re.compile(r"[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{2,4}(?![0-9])")
_WORDY_DATE = re.compile(
    r"(?P<m1>[A-Za-z]{3,9})\.? (?P<d1>[0-9]{1,2})(?:st|nd|rd|th)?,? (?P<y1>[0-9]{4})"
    r"|(?P<d2>[0-9]{1,2}) (?P<m2>[A-Za-z]{3,9})\.?,? (?P<y2>[0-9]{4})"
)
_PHONE = re.compile(
    r"\s*[:#]?\s*(?:\+?1[-. ]?)?\(?[2-9][0-9]{2}\)?[-. ]?[0-9]{3}[-. ][0-9]{4}(?![0-9])"
)
_STREET = re.compile(
    r"\s*[:\-]?\s*[0-9]{1,6}\s+(?:[A-Z0-9][A-Za-z0-9.']*\s+){1,4}"
    r"(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Ln|Lane|Dr|Drive|Ct|Court|Way|Pl|Place"
    r"|Ter|Terrace|Pkwy|Parkway|Cir|Circle|Hwy|Highway)\b"
)
_NAME_WORD = r"[A-Z][A-Za-z'\-]*[a-z]"
_NAME = (
    rf"(?:{_NAME_WORD},\s*{_NAME_WORD})"
    rf"|(?:{_NAME_WORD}(?:\s+[A-Z]\.?)?\s+{_NAME_WORD})"
)
# EHR exports often write names in capitals ("GARCIA, MARIA"); after a label only,
# because "patient PORTAL" in running text is more often a product name.
_CAPS_WORD = r"[A-Z][A-Z'\-]+"
_CAPS_NAME = rf"(?:{_CAPS_WORD},\s*{_CAPS_WORD})|(?:{_CAPS_WORD}(?:\s+[A-Z]\.?)?\s+{_CAPS_WORD})"
# Without a label separator, capitals count only in the "SURNAME, GIVEN" order of EHR
# exports ("Pt KEMPER, ROSALIND"), which product names do not take.
_CAPS_INVERTED = rf"{_CAPS_WORD},\s*{_CAPS_WORD}"
_PATIENT_NAME = re.compile(
    r"(?:'s)?(?:\s+(?:full\s+)?name)?\s*[:\-]\s*(?P<labelled>" + _NAME + "|" + _CAPS_NAME + r")"
    r"|,?\s+(?P<inline>" + _NAME + "|" + _CAPS_INVERTED + r")"
)
_NAME_SEPARATOR = re.compile(r"[\s,]+")
# A postgraduate year after a name: a hospital resident, who is a physician.
_TRAINEE_AFTER = re.compile(r",? *[(-]? *PGY ?-?[0-9]")
_DATE_SEPARATOR = re.compile(r"[-/.]")
# _LABELLED_ID tokens are ASCII, so deleting 0-9 leaves everything but the digits.
_DROP_DIGITS = str.maketrans("", "", "0123456789")
# Words that follow "Patient" in names of things, not of people ("Patient Portal").
_NOT_NAMES = frozenset(
    "portal care services service experience safety access advocate advocacy relations "
    "financial financials accounts account intake information info education engagement "
    "satisfaction support registration scheduling transport transportation flow rights "
    "records record first centered centred day week month survey team office line room "
    "navigator liaison coordinator assistance guide guides name names id number notes "
    "billing family health privacy consent forms form "
    # Field labels that follow "patient" in capitals ("Patient MRN, DOB").
    "mrn dob dos ssn csn fin mbi sex age dx hpi pt ot hipaa phi "
    # A doctor written without the full stop ("Resident: Dr Lena Fox").
    "dr doctor".split()
)

# Words skipped inside a phrase ("[a-z]++ ") are read with a possessive "++". Giving
# letters back could only leave a letter where the space after the word must follow,
# so the matches are those of "+", but the engine does not try it at each letter. That
# made the search for the phrases 25% faster on the corpus.
_RECIPIENT_PHRASES: tuple[tuple[re.Pattern[str], float], ...] = (
    (
        re.compile(
            r"\byour (?:recent |latest |new )?(?:(?:[a-z0-9/-]++ ){0,2}(?:lab|laboratory|blood|"
            r"blood test|blood work|pathology|biopsy|mri|ct|ct scan|mammogram|covid(?:-19)?|pap|"
            r"a1c|cholesterol|std|hiv|genetic|dna|ultrasound|ecg|ekg|echo|pregnancy|stool|"
            r"allergy|sleep study|psa|thyroid|bone density|dexa|cancer panel|lipid panel|"
            r"metabolic panel|genetic panel)|imaging|x-ray|screening|urine|culture)"
            r" (?:test )?results?(?: [^.\n]{1,60}?)? (?:are|is|have|has) (?:now )?"
            r"(?:been )?(?:ready|available|in|back|posted|released|abnormal|normal|complete|"
            r"completed|final|finalized|finalised)"
        ),
        1.0,
    ),
    # Results of a visit are a clinic's, even when the test is not named.
    (
        re.compile(
            r"\byour (?:test |lab )?results? (?:from|of) your (?:recent |last )?"
            r"(?:visit|appointment|appt|exam|procedure|check-?up|physical)\b"
        ),
        1.0,
    ),
    # A result stated as a finding: "your COVID-19 PCR test result: NEGATIVE", "your
    # pregnancy test was positive". Build and CI mail reports passed or failed instead.
    # The test is a health test by its own name (swab, biopsy, titer) or by a health
    # word before a general one ("your HIV screening test").
    (
        re.compile(
            r"\byour (?:(?:[a-z0-9/-]++ ){0,3}(?:swab|biopsy|pcr|titer|titre|antibody|antibodies|"
            r"pap smear)|(?:[a-z0-9/-]++ ){0,2}(?:hiv|std|sti|covid(?:-19)?|hepatitis|hep|strep|"
            r"pregnancy|tb|tuberculosis|flu|influenza|rsv|pap|hpv|genetic|dna|pcr|chlamydia|"
            r"gonorrhea|syphilis|lyme|blood|urine|stool|cancer)(?: [a-z0-9/-]++){0,2} "
            r"(?:test|screen|screening|culture|panel))"
            r"(?: results?)?\b[^.\n]{0,25}?(?:\b(?:is|was|were|came back|returned)\b|:) ?(?:now )?"
            r"(?:negative|positive|not detected|abnormal|reactive|non-reactive|nonreactive)\b"
        ),
        1.0,
    ),
    # The same with a test word that other trades use too ("your well water test came
    # back negative for coliform"), so a health word has to add the other half.
    (
        re.compile(
            r"\byour (?:[a-z0-9/-]++ ){0,3}(?:test|screen|screening|culture|panel)"
            r"(?: results?)?\b[^.\n]{0,25}?(?:\b(?:is|was|were|came back|returned)\b|:) ?(?:now )?"
            r"(?:negative|positive|not detected|abnormal|reactive|non-reactive|nonreactive)\b"
        ),
        0.5,
    ),
    (
        re.compile(
            r"\byour (?:test )?results? (?:are|is|have|has) (?:now )?(?:been )?(?:ready|available|back|posted)"
        ),
        0.5,
    ),
    (
        re.compile(
            r"\byour (?:prescriptions?|medications?|refills?|rx)\b(?:[^.\n]|\.(?=[0-9])){0,80}?"
            r"\b(?:is|are|has been|have been) "
            r"(?:now )?(?:ready|filled|approved|processed|on hold|due)"
        ),
        1.0,
    ),
    (
        re.compile(
            r"\byou(?:r| have an?) (?:upcoming |next |scheduled |follow-up |annual )?(?:[a-z]++ )?"
            r"(?:appointment|appt|visit|procedure|surgery|follow-up|check-?up|exam|consultation|"
            r"colonoscopy|mammogram|cleaning|physical|screening|session|infusion|vaccination)\b"
            r"(?:[^.\n]|\.(?=[0-9])){0,80}?"
            r"\b(?:with|see) (?:dr\b\.?|doctor\b|nurse practitioner\b|np\b|pa-c\b|your provider\b)"
        ),
        1.0,
    ),
    (
        re.compile(
            r"\b(?:refill reminder|time to refill\b|due for (?:a |your )?refill\b|ready to refill\b|"
            r"refill (?:is|has been) (?:approved|ready|processed)|refill request (?:for|has))"
        ),
        # Coffee, ink and water get refill reminders too, so a drug, a prescription or
        # a pharmacy has to add the other half (the health bonus in rules.decide).
        0.5,
    ),
    (
        re.compile(
            r"\byour (?:diagnosis|biopsy|test came back|results show|treatment plan|prescription for|"
            r"recent (?:visit|procedure|surgery|admission|hospital stay))\b"
        ),
        1.0,
    ),
    (
        re.compile(
            r"\byou(?:r| have an?) (?:upcoming |next |scheduled )?(?:[0-9]+-(?:day|week|month|year) )?"
            r"(?:[a-z]++ )?(?:appointment|appt|visit) "
            r"(?:is )?(?:scheduled |confirmed |booked )?(?:at [a-z0-9' &-]{1,40}? )?"
            r"(?:on|for|at|this|next) "
            r"(?:mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|[0-9])"
        ),
        0.5,
    ),
    (
        re.compile(
            r"\b(?:reminder|remind you)\b[^.\n]{0,40}"
            r"\byou(?:r| have an?) (?:upcoming |next |scheduled )?(?:[a-z]++ ){0,2}"
            r"(?:appointment|appt|visit|(?:therapy|counseling|counselling|treatment|infusion|"
            r"dialysis|rehab) session)\b"
        ),
        0.5,
    ),
    # Appointments of other kinds ("your exam appointment", "your visa appointment")
    # are left out.
    (
        re.compile(
            r"\byour (?!(?:exam|test|testing|interview|driving|visa|passport|tax|hair|salon|"
            r"service|repair|installation|delivery|moving|closing|notary|car|vehicle) "
            r"(?:appointment|appt|visit|session)\b)"
            r"(?:[a-z]++ )?(?:appointment|appt|visit|procedure|surgery|cleaning|exam|"
            r"check-?up|physical|screening|session|infusion|vaccination)\b[^.\n]{0,40}?"
            r"\b(?:is|has been) "
            r"(?:now )?(?:scheduled|booked|confirmed|rescheduled)\b"
        ),
        0.5,
    ),
    (
        re.compile(
            r"\byou(?:'re| are) (?:now )?(?:over)?due for (?:your |a )?(?:annual |yearly )?"
            r"(?:mammogram|colonoscopy|physical|check-?up|screening|a1c|pap smear|eye exam)"
        ),
        0.5,
    ),
    # A clinician's review of the recipient's own tests. Chemistry teachers review lab
    # work too, so a health word has to add the other half.
    (
        re.compile(
            r"\b(?:reviewed|looked at|went over|gone over) your (?:recent |latest )?"
            r"(?:lab work|labwork|lab results|bloodwork|blood work|blood tests?|"
            r"blood test results)\b"
        ),
        0.5,
    ),
    # Results of a named sample or test, to the person it was taken from.
    (
        re.compile(
            r"\bresults? (?:from|of) your (?:recent |last )?(?:blood draw|blood work|bloodwork|"
            r"blood test|lab work|labwork|labs|lab test|lab visit|biopsy|mammogram|mri|ultrasound|"
            r"x-ray|ct scan|colonoscopy|pap smear|pap test|a1c)\b"
        ),
        1.0,
    ),
    # The same with a test word that other trades use too ("results of your speed
    # test"), so a health word has to add the other half.
    (
        re.compile(
            r"\bresults? (?:from|of) your (?:[a-z0-9-]++ ){0,2}(?:panel|panels|tests?|labs?|scan|"
            r"draw|screening|culture|swab)\b"
        ),
        0.5,
    ),
    # What a test found, addressed to the person tested ("your test found a pathogenic
    # variant"). Web and security scans find things too, so a health word has to add
    # the other half.
    (
        re.compile(
            r"\byour (?:[a-z0-9-]++ ){0,2}(?:test|tests|results?|scan|biopsy|screening)"
            r" (?:found|shows|showed|revealed|detected|confirmed|indicates|indicated)\b"
        ),
        0.5,
    ),
    # A booking for care, addressed to the person booked ("you're scheduled with Dr. Ng on
    # Tuesday for your cleaning"). Thesis defences and oral exams are booked with
    # doctors too, so the booking names the care, and a health word or a care setting
    # has to add the other half (house cleaning has neither).
    (
        re.compile(
            r"\byou(?:'re| are) (?:now |all )?(?:scheduled|booked|confirmed)\b"
            r"(?:[^.\n]|(?<=\bdr)\.){0,80}?"
            r"\bfor your (?:[a-z0-9-]++ ){0,2}(?:cleaning|scaling|check-?up|physical|visit|"
            r"appointment|appt|follow-up|echo|x-rays?|mri|ct|scan|ultrasound|mammogram|"
            r"colonoscopy|procedure|surgery|infusion|injection|vaccine|shot|treatment|therapy|"
            r"screening|labs?|blood work|bloodwork|biopsy|blood draw)\b"
        ),
        0.5,
    ),
    # An insurer's claim notice for care ("your claim for services on 11/02"). Car
    # insurers also write "services", so the phrase needs a health word as well. Claims
    # for other things (expenses, a stolen bike) do not match, even when the sender's
    # signature names a hospital.
    (
        re.compile(
            r"\byour (?:(?:insurance|medical|health|dental|vision|pharmacy|hospital) )?claim\b"
            r"[^.\n]{0,60}?\b(?:services?|care|treatment|visit|stay|procedure|surgery|exam|mri|"
            r"ct scan|x-ray|scan|colonoscopy|mammogram|ultrasound|therapy|prescription)\b"
            r"[^.\n]{0,80}?\b(?:has been|have been|was|is) (?:now )?"
            r"(?:processed|approved|denied|paid|adjudicated)"
        ),
        0.5,
    ),
)


_NOT_SENTENCE_END = r"[^.\n]"
# A line break that does not start a blank line, which ends a paragraph.
_LINE_BREAK = r"\r?\n(?![ \t]*\r?\n)"


def _across_line_breaks(pattern: str) -> str:
    r"""Return ``pattern`` with each space, and each ``[^.\n]``, also matching a line
    break that does not end a paragraph. ``[^.\n]`` no longer matches a lone "\r".

    Plain-text mail is wrapped at about 72 characters, so a phrase often continues on
    the next line ("your panel results (collected\r\n12/18/2025) are complete"). A
    blank line still ends the phrase. Spaces inside character classes are kept.
    """
    pieces: list[str] = []
    index = 0
    in_class = False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            pieces.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
            pieces.append(char)
        elif pattern.startswith(_NOT_SENTENCE_END, index):
            pieces.append(rf"(?:[^.\r\n]|{_LINE_BREAK})")
            index += len(_NOT_SENTENCE_END)
            continue
        elif char == "[":
            in_class = True
            pieces.append(char)
            # A "]" right after "[" or "[^" is a member of the class, not its end.
            for prefix in ("^]", "]", "^"):
                if pattern.startswith(prefix, index + 1):
                    pieces.append(prefix)
                    index += len(prefix)
                    break
        elif char == " ":
            pieces.append(rf"(?:[ ]|{_LINE_BREAK})")
        else:
            pieces.append(char)
        index += 1
    return "".join(pieces)


# The phrases above are written with single spaces, for reading. The scanner uses them
# with line breaks allowed where the spaces are.
_RECIPIENT_PHRASES = tuple(
    (re.compile(_across_line_breaks(pattern.pattern)), weight)
    for pattern, weight in _RECIPIENT_PHRASES
)

# Phrases are searched with two alternations, each with one named group per phrase.
# Those starting with "you" share that literal prefix, which the regex engine finds
# with a fast substring search. The word boundary before "you" is checked in Python.
_YOU_PREFIX = r"\byou"
_YOU_PHRASE = re.compile(
    "you(?:"
    + "|".join(
        f"(?P<phrase{index}>{pattern.pattern[len(_YOU_PREFIX) :]})"
        for index, (pattern, _) in enumerate(_RECIPIENT_PHRASES)
        if pattern.pattern.startswith(_YOU_PREFIX)
    )
    + ")"
)
_OTHER_PHRASE = re.compile(
    "|".join(
        f"(?P<phrase{index}>{pattern.pattern})"
        for index, (pattern, _) in enumerate(_RECIPIENT_PHRASES)
        if not pattern.pattern.startswith(_YOU_PREFIX)
    )
)
_RECIPIENT_WEIGHTS = {
    f"phrase{index}": weight for index, (_, weight) in enumerate(_RECIPIENT_PHRASES)
}

# Keyword groups of health number labels, and the check each label's number must pass.
_HEALTH_NUMBER_CHECKS = {
    "nhs_number": v.nhs_number_valid,
    "medicare_card": v.australian_medicare_valid,
    "health_card": v.ontario_health_number_valid,
}
# Keyword groups whose hits _scan_labelled and _scan_health_words look at.
_IDENTIFIER_LABEL_GROUPS = ("mrn", "member_id", "account_number", "drivers_license")
_LABEL_GROUPS = frozenset(
    _IDENTIFIER_LABEL_GROUPS
    + ("medicare", "date_of_birth", "phone", "address", "patient")
    + tuple(_HEALTH_NUMBER_CHECKS)
)
_HEALTH_GROUPS = ("condition", "medication", "procedure", "lab_result", "treatment", "care_setting")
# Keyword groups whose hits clinical.scan_lab_values looks at.
_LAB_GROUPS = frozenset({"lab_test", "lab_test_unit", "lab_unit"})
# Keyword groups that introduce a patient's name (people.py). "patient" is not among
# them because the labelled patient-name rule covers "Patient: Name". The shorthand
# "pt" is checked apart.
_NAME_CUE_GROUPS = frozenset({"name_cue", "name_cue_weak", "name_cue_after", "name_cue_after_weak"})
# Keyword groups after which the clinical steps run: health words that are findings
# of weight (not treatment words or care settings, which are in most clinic mail),
# lab tests, clinical shorthand and code keywords. A dotted diagnosis code found
# without its keyword ("E11.9" alone) also runs them (_CODE_CATEGORIES).
# Keyword groups of words that count only when the sentence rule ties them to a person
# (sentences.py).
_TIED_GROUPS = frozenset(TIED_CATEGORIES)
# Hits of those groups checked for a head word before the clinical steps run.
_MAX_TIED_HEAD_CHECKS = 200
_CLINICAL_GROUPS = frozenset(
    {"condition", "medication", "procedure", "lab_result", "clinical_cue"}
    | _TIED_GROUPS
    | {"diagnosis_code", "procedure_code", "ndc"}
    | _LAB_GROUPS
)

# Findings of the number pass that are health information by themselves. A dotted
# ICD-10-CM code needs no keyword ("claim for Peter Okafor with E78.5"), so it alone
# can tie a name to health information.
_CODE_CATEGORIES = frozenset({"diagnosis_code", "procedure_code", "ndc"})

# A capitalised name after "Dr.", which a street suffix is not followed by.
_NAME_AFTER_TITLE = re.compile(r" ?[A-Z][a-z]")
_WORD_BEFORE = re.compile(r"([a-z]+)[ -]$")
# A street type after a care setting's name makes it an address ("Medical Center Dr.").
_STREET_AFTER = re.compile(
    r"\s+(?:dr|drive|rd|road|st|street|ave|avenue|blvd|boulevard|way|pkwy|parkway|plaza|ln|"
    r"lane|ct|court|pl|place|cir|circle)\b"
)
# Clinics of other trades, which are no place of care.
_OTHER_CLINICS = frozenset(
    "writing law legal tax vet veterinary pet tutoring coding career resume bike golf "
    "tennis soccer basketball football sports ski math reading repair computer it".split()
)

# Characters searched around a recipient-phrase anchor word.
_PHRASE_BEFORE = 100
_PHRASE_AFTER = 140
# Characters after a number searched for its keyword, for the identifiers whose
# keyword may follow them. Procedure codes are not among them: a ZIP code is often
# followed by "CPT" on the next item.
_KEYWORD_AFTER = 25
# Maximum gap between codes in a list ("CPT 99213, 99214 and 36415") for the keyword
# before the first code to cover the later ones.
_LIST_GAP = 6


class TextScanner:
    """Scanner for one configuration's keyword lists and custom identifiers.

    Immutable after construction, so one instance serves many threads."""

    def __init__(
        self,
        keywords: KeywordMatcher,
        custom_rules: tuple[CustomRule, ...] = (),
        context_window: int = 60,
    ) -> None:
        self._keywords = keywords
        self._custom_rules = custom_rules
        self._window = context_window

    def scan(self, text: str) -> list[Finding]:
        """Return every finding in ``text``, in no particular order."""
        return self.scan_checked(text)[0]

    def scan_checked(self, text: str) -> tuple[list[Finding], list[str]]:
        """Return the findings in ``text``, and why parts of it were not read.

        A text with more keyword hits than ``keywords.MAX_HITS`` loses the later hits,
        and the scan stops at ``MAX_FINDINGS`` findings. Each limit that was reached
        adds a reason, and the caller reports the text as not fully scanned.
        """
        lowered = lower_same_length(text)
        hits, first_digit, complete = self._keywords.search_text(lowered)
        state = _ScanState(text, lowered, hits, self._window)
        reasons = [] if complete else [f"keywords after the first {MAX_HITS} hits not read"]
        try:
            self._run_steps(state, first_digit)
        except _FindingLimitReached:
            reasons.append(f"findings after the first {MAX_FINDINGS} not read")
        return state.findings, reasons

    def _run_steps(self, state: _ScanState, first_digit: int) -> None:
        hits = state.hits
        if first_digit >= 0:
            self._scan_numbers(state, first_digit)
        # Each keyword step runs only when its groups were hit: most texts hit a few
        # groups, and a step that finds nothing still costs a microsecond or more.
        found_groups = hits.spans.keys()
        if "diagnosis_code" in found_groups or "procedure_code" in found_groups:
            self._scan_short_codes(state)
        if not found_groups.isdisjoint(_LABEL_GROUPS):
            self._scan_labelled(state)
        if not found_groups.isdisjoint(_HEALTH_GROUPS):
            self._scan_health_words(state)
        # One test gates all clinical steps, because most texts hit none of these groups.
        if not found_groups.isdisjoint(_CLINICAL_GROUPS) or state.found_any(_CODE_CATEGORIES):
            self._scan_clinical(state, found_groups)
        if "recipient_anchor" in found_groups:
            self._scan_recipient_phrases(state)
        if self._custom_rules:
            self._scan_custom(state)

    # -- identifiers built around digits ---------------------------------------------

    def _scan_numbers(self, state: _ScanState, first_digit: int) -> None:
        """Run the identifier checks at each chain of digits. Chains start at a digit,
        so the search starts at the text's first one."""
        text = state.text
        try_at = self._try_at
        consumed = 0
        for match in _CHAIN.finditer(text, first_digit):
            if match.lastgroup == "plain":
                continue
            chain_start, chain_end = match.span()
            if chain_end <= consumed:
                continue
            start = chain_start
            while start > 0 and text[start - 1] in _ASCII_ALNUM:
                start -= 1
            # A GUID reaches this pass as one chain with at least three of its hyphens.
            if text.count("-", chain_start, chain_end) >= 3 and _inside_guid(
                text, start, chain_end
            ):
                continue
            iban_start = start
            if (
                start == chain_start
                and start >= 2
                and text[start - 1] == " "
                and text[start - 2] in _IBAN_GROUP_CHARS
            ):
                # A spaced IBAN whose first groups hold letters ("GB82 WEST 1234 ...")
                # reaches the number pass at its first all-digit group.
                before = _IBAN_BEFORE.search(text, max(0, start - 40), start)
                if before is not None:
                    iban_start = before.start()
            if iban_start < chain_start:
                iban_end = self._try_iban(state, iban_start)
                if iban_end:
                    consumed = iban_end
                    continue
            position = start if start > consumed else consumed
            while position < chain_end:
                found_end = try_at(state, position, chain_end)
                # Move to the start of the next group of letters and digits, skipping
                # the rest of the current one unless the finding ended at its edge.
                position = found_end if found_end > position else position + 1
                if position < chain_end:
                    if text[position - 1] in _ASCII_ALNUM:
                        skip = _GROUP_REST.match(text, position, chain_end)
                    else:
                        skip = _SEPARATORS.match(text, position, chain_end)
                    position = skip.end()  # type: ignore[union-attr]
            consumed = chain_end

    def _scan_short_codes(self, state: _ScanState) -> None:
        """Find undotted ICD-10-CM and HCPCS codes of 3 to 5 characters after their
        keywords; the number pass skips tokens that short."""
        ends = sorted(
            set(state.hits.ends.get("diagnosis_code", []))
            | set(state.hits.ends.get("procedure_code", []))
        )
        searched_to = 0
        for keyword_end in ends:
            window_start = max(keyword_end, searched_to)
            window_end = min(len(state.text), keyword_end + self._window)
            for match in _SHORT_CODE.finditer(state.text, window_start, window_end):
                if state.covered(match.start()):
                    continue
                self._try_icd(state, match.start(), match.end()) or self._try_hcpcs(
                    state, match.start(), match.end()
                )
            searched_to = max(searched_to, window_end)

    def _try_iban(self, state: _ScanState, start: int) -> int:
        text = state.text
        if not (text[start : start + 2].isupper() and text[start : start + 2].isalpha()):
            return 0
        match = _IBAN.match(text, start)
        if match is None or not _ends_token(text, match.end()):
            return 0
        if not v.iban_valid(match.group()):
            return 0
        state.add("iban", start, match.end(), 0.95)
        return match.end()

    def _try_at(self, state: _ScanState, position: int, chain_end: int) -> int:
        """Try the identifier shapes that fit the group at ``position``; return the end of
        a finding, or 0 when nothing matched."""
        text = state.text
        first = text[position]
        if first.isdigit():
            run = _DIGITS.match(text, position, chain_end)
            assert run is not None
            run_end = run.end()
            length = run_end - position
            following = text[run_end] if run_end < chain_end else ""
            # Dispatch on the first digit run so that each group costs one or two
            # regex calls rather than one per identifier type.
            if length == 1 and following.isupper():
                return self._try_mbi(state, position, chain_end)
            if length == 4 and following in (" ", "-"):
                return self._try_card_grouped(
                    state, position, chain_end
                ) or self._try_ndc_hyphenated(state, position, chain_end)
            if length == 3 and following in ("-", " ", "."):
                return self._try_ssn_separated(state, position, chain_end)
            if length == 5 and following == "-":
                return self._try_ndc_hyphenated(state, position, chain_end)
            if length == 4 or length == 5 or length >= 9:
                return self._try_digit_run(state, position, chain_end, run_end)
            return 0
        if first.isupper():
            return (
                self._try_icd(state, position, chain_end)
                or self._try_hcpcs(state, position, chain_end)
                or self._try_dea(state, position, chain_end)
            )
        return 0

    def _try_mbi(self, state: _ScanState, position: int, chain_end: int) -> int:
        match = v.MBI_PATTERN.match(state.text, position, chain_end)
        if match is None or not _ends_group(state.text, match.end(), chain_end):
            return 0
        if not v.mbi_valid(match.group()):
            return 0
        state.add("mbi", position, match.end(), 0.9)
        return match.end()

    def _try_card_grouped(self, state: _ScanState, position: int, chain_end: int) -> int:
        text = state.text
        match = _CARD_GROUPED.match(text, position, chain_end)
        if match is None or not _ends_group(text, match.end(), chain_end):
            return 0
        separator = match.group("s") or match.group("t")
        # A fourth group of 1-3 digits may be the end of a 19-digit card or the
        # security code or expiry month written after a 16-digit one.
        ends = [match.end()]
        if match.group("s") and match.end() - position > 19:
            ends.append(position + 19)
        for end in ends:
            if _digits_after(text, end, separator) >= 4 or _digits_before(
                text, position, separator
            ):
                continue
            if v.card_valid(text[position:end]):
                state.add("payment_card", position, end, 0.95)
                return end
        return 0

    def _try_ssn_separated(self, state: _ScanState, position: int, chain_end: int) -> int:
        text = state.text
        match = _SSN_SEPARATED.match(text, position, chain_end)
        if match is None or not _ends_group(text, match.end(), chain_end):
            return 0
        if _continues_number(text, position, match.end(), match.group("s")):
            return 0
        if not v.ssn_valid(match.group()):
            return 0
        # Space- and dot-separated 3-2-4 numbers are rarer as SSNs than hyphenated ones,
        # so they need the keyword: near the number, or, for spaces, anywhere in the
        # text ("sorry about that, it's 531 40 7726" in a reply that quotes "your
        # social security number").
        separator = match.group("s")
        if (
            separator != "-"
            and not state.keyword_near("ssn", position, match.end())
            and not (separator == " " and "ssn" in state.hits.spans)
        ):
            return 0
        state.add("ssn", position, match.end(), 0.95)
        return match.end()

    def _try_ndc_hyphenated(self, state: _ScanState, position: int, chain_end: int) -> int:
        match = _NDC_HYPHENATED.match(state.text, position, chain_end)
        if match is None or not _ends_group(state.text, match.end(), chain_end):
            return 0
        if not v.ndc_shape_valid(match.group()):
            return 0
        if not state.keyword_before("ndc", position, allow_list=("ndc",)):
            return 0
        state.add("ndc", position, match.end(), 0.9)
        return match.end()

    def _try_digit_run(self, state: _ScanState, position: int, chain_end: int, end: int) -> int:
        """Try the identifiers of a bare run of digits, ``text[position:end]``."""
        text = state.text
        if end < chain_end and text[end] in _ASCII_ALNUM:
            # Digits glued to letters ("4F", "12ab") are a different token; CPT
            # category II codes end in a letter and are tried below.
            return self._try_cpt(state, position, chain_end)
        digits = text[position:end]
        length = len(digits)
        if _is_inside_longer_number(text, position, end):
            return 0
        # A bare run needs its keyword near, so the checks below first look up the
        # keyword group in the text's hits, which costs one dictionary lookup.
        groups = state.hits.spans
        if 13 <= length <= 19:
            if (
                "card" in groups
                and not v.looks_like_epoch(digits)
                and v.card_valid(digits)
                and state.keyword_near("card", position, end)
            ):
                state.add("payment_card", position, end, 0.9)
                return end
        elif length == 9:
            if (
                "ssn" in groups
                and v.ssn_valid(digits)
                and state.keyword_near("ssn", position, end)
            ):
                state.add("ssn", position, end, 0.9)
                return end
        elif length in (10, 11):
            if (
                length == 10
                and "npi" in groups
                and v.npi_valid(digits)
                and state.keyword_near("npi", position, end)
            ):
                state.add("clinician_id", position, end, 0.9)
                return end
            if state.keyword_before("ndc", position, allow_list=("ndc",)):
                state.add("ndc", position, end, 0.8)
                return end
        elif length == 5:
            return self._try_cpt(state, position, chain_end)
        return 0

    def _try_cpt(self, state: _ScanState, position: int, chain_end: int) -> int:
        text = state.text
        match = _CPT.match(text, position, chain_end)
        if match is None or not _ends_group(text, match.end(), chain_end):
            return 0
        # The keyword check comes first because it is the cheaper one: most five-digit
        # numbers in mail have no procedure-code keyword before them.
        if not state.keyword_before(
            "procedure_code", position, window=30, allow_list=("procedure_code",)
        ):
            return 0
        if _looks_like_zip(text, position, match.end()):
            return 0
        state.add("procedure_code", position, match.end(), 0.85)
        return match.end()

    def _try_icd(self, state: _ScanState, position: int, chain_end: int) -> int:
        text = state.text
        match = _ICD.match(text, position, chain_end)
        if match is None or not _ends_group(text, match.end(), chain_end):
            return 0
        code = match.group()
        if not v.icd10cm_exists(code):
            return 0
        # A dotted code such as E11.9 is unusual outside medicine. A bare three-character
        # code (B12, C50, A15) is also a grid reference, vitamin or part number, so it
        # needs a diagnosis keyword before it.
        dotted = "." in code
        if not dotted and not state.keyword_before(
            "diagnosis_code", position, allow_list=("diagnosis_code",)
        ):
            return 0
        state.add("diagnosis_code", position, match.end(), 0.9 if dotted else 0.8)
        return match.end()

    def _try_hcpcs(self, state: _ScanState, position: int, chain_end: int) -> int:
        match = _HCPCS.match(state.text, position, chain_end)
        if match is None or not _ends_group(state.text, match.end(), chain_end):
            return 0
        if not state.keyword_before(
            "procedure_code", position, window=30, allow_list=("procedure_code",)
        ):
            return 0
        state.add("procedure_code", position, match.end(), 0.8)
        return match.end()

    def _try_dea(self, state: _ScanState, position: int, chain_end: int) -> int:
        match = _DEA.match(state.text, position, chain_end)
        if match is None or not _ends_group(state.text, match.end(), chain_end):
            return 0
        if not v.dea_valid(match.group()) or not state.keyword_before("dea", position):
            return 0
        state.add("clinician_id", position, match.end(), 0.9)
        return match.end()

    # -- identifiers that follow a label ------------------------------------------------

    def _scan_labelled(self, state: _ScanState) -> None:
        text, hits = state.text, state.hits
        for group in _IDENTIFIER_LABEL_GROUPS:
            for keyword_end in hits.ends.get(group, ()):
                match = _LABELLED_ID.match(text, keyword_end, keyword_end + 60)
                if match is None or _blank_line_between(text, keyword_end, match.start("id")):
                    continue
                if match.group("state") and (
                    group != "drivers_license"
                    or _is_short_licence_label(state.lowered, keyword_end)
                ):
                    # A state before the number marks a driver's licence only after a
                    # label that names one ("Lic # CA 1045872" is more often a
                    # contractor's licence).
                    continue
                if (
                    group == "drivers_license"
                    and _is_short_licence_label(state.lowered, keyword_end)
                    and _TRADE_BEFORE.search(state.lowered, max(0, keyword_end - 50), keyword_end)
                ):
                    # A trade's licence in its signature ("Tolliver Plumbing, lic
                    # #PL-20931").
                    continue
                token = match.group("id")
                if len(token) < 5 or len(token) - len(token.translate(_DROP_DIGITS)) < 4:
                    continue
                if v.numeric_date_valid(token):
                    continue
                if state.covered(match.start("id")):
                    continue
                state.add(group, match.start("id"), match.end("id"), 0.85)
        for keyword_end in hits.ends.get("medicare", ()):
            match = _LABELLED_ID.match(text, keyword_end, keyword_end + 40)
            if match is None or _blank_line_between(text, keyword_end, match.start("id")):
                continue
            if v.mbi_valid(match.group("id").upper()):
                if not state.covered(match.start("id")):
                    state.add("mbi", match.start("id"), match.end("id"), 0.85)
        for group, valid in _HEALTH_NUMBER_CHECKS.items():
            for keyword_end in hits.ends.get(group, ()):
                match = _HEALTH_NUMBER.match(text, keyword_end, keyword_end + 40)
                if match is None or _blank_line_between(text, keyword_end, match.start("id")):
                    continue
                if valid(match.group("id")) and not state.covered(match.start("id")):
                    state.add("health_number", match.start("id"), match.end("id"), 0.9)
        for keyword_end in hits.ends.get("date_of_birth", ()):
            self._try_birth_date(state, keyword_end)
        for keyword_end in hits.ends.get("phone", ()):
            match = _PHONE.match(text, keyword_end, keyword_end + 40)
            if match is not None:
                state.add("phone", keyword_end, match.end(), 0.8)
        for keyword_end in hits.ends.get("address", ()):
            match = _STREET.match(text, keyword_end, keyword_end + 80)
            if match is not None:
                state.add("address", keyword_end, match.end(), 0.8)
        for keyword_end in hits.ends.get("patient", ()):
            match = _PATIENT_NAME.match(text, keyword_end, keyword_end + 60)
            if match is None:
                continue
            name = match.group("labelled") or match.group("inline")
            words = _NAME_SEPARATOR.split(name)
            first_word = words[0].lower()
            last_word = words[-1].lower()
            if first_word in _NOT_NAMES or last_word in _NOT_NAMES:
                continue
            if state.lowered.endswith("resident", 0, keyword_end) and not _is_resident_patient(
                text, match
            ):
                continue
            state.add("patient_name", keyword_end, match.end(), 0.8)

    def _try_birth_date(self, state: _ScanState, keyword_end: int) -> None:
        text = state.text
        window_end = min(len(text), keyword_end + 30)
        segment = text[keyword_end:window_end]
        numeric = _NUMERIC_DATE.search(segment)
        if numeric is not None and v.numeric_date_valid(numeric.group()):
            if _plausible_birth_year(numeric.group()):
                state.add(
                    "date_of_birth", keyword_end + numeric.start(), keyword_end + numeric.end(), 0.9
                )
                return
        wordy = _WORDY_DATE.search(segment)
        if wordy is None:
            return
        month_name = wordy.group("m1") or wordy.group("m2")
        day = int(wordy.group("d1") or wordy.group("d2"))
        year = int(wordy.group("y1") or wordy.group("y2"))
        month = v.month_number(month_name)
        if month is not None and v.date_valid(year, month, day) and 1900 <= year <= _this_year():
            state.add("date_of_birth", keyword_end + wordy.start(), keyword_end + wordy.end(), 0.9)

    # -- health vocabulary and phrases -------------------------------------------------

    def _scan_clinical(self, state: _ScanState, groups: KeysView[str]) -> None:
        """Run the steps of clinical.py and people.py that the keyword hits call for."""
        if groups.isdisjoint(_CLINICAL_GROUPS - _TIED_GROUPS) and not state.found_any(
            _CODE_CATEGORIES
        ):
            # Only words such as "flu" or "stroke", which count when a sentence ties
            # them to a person. One that does not head its phrase ("the flu season")
            # cannot be, and a newsletter repeats it many times.
            lowered = state.lowered
            if not any(
                is_head(lowered, end)
                for group in _TIED_GROUPS
                for _, end in state.hits.spans.get(group, ())[:_MAX_TIED_HEAD_CHECKS]
            ):
                return
        if not groups.isdisjoint(_LAB_GROUPS):
            scan_lab_values(state)
        if "clinical_cue" in groups:
            scan_clinical_cues(state)
        if "medication" in groups:
            scan_medication_ties(state)
        if not groups.isdisjoint(OWN_CARE_GROUPS):
            scan_own_care(state)
        # Short test names and patients' names are looked for only around the health
        # findings, and only in texts that could name a patient without a label. Such a
        # text has a cue word, a courtesy title, "pt", a pasted table, or clinical
        # shorthand and lab values (which "Name, 62 yo M" needs). A text that already
        # has an identifier and health words gains nothing from short test names.
        text = state.text
        person_cue = (
            not groups.isdisjoint(_NAME_CUE_GROUPS)
            or "\t" in text
            or "Mr" in text
            or "Ms" in text
            or "Mx" in text
            or "Miss" in text
            or any(end - start <= 3 for start, end in state.hits.spans.get("patient", ()))
            or "room_cue" in groups
            or state.found_any(_CODE_CATEGORIES)
            or len(whole_text_list_rows(state)) >= 2
            # A third person's health after their name (people._narrative_names), or
            # a person named by a given name (sentences.py).
            or "third_person" in groups
        )
        span = health_span(state)
        if not (person_cue or state.ties) and (span is None or not has_given_name(text, *span)):
            return
        if span is not None:
            scan_short_lab_values(state, span)
            scan_people(state, span, sentence_candidates)

    def _scan_health_words(self, state: _ScanState) -> None:
        for group in _HEALTH_GROUPS:
            # Spans sorted by end; a keyword inside a longer one of the same group
            # ("diabetes" in "type 2 diabetes") is one finding, not two.
            spans = state.hits.spans.get(group)
            if not spans:
                continue
            kept: list[tuple[int, int]] = []
            for start, end in spans:
                while kept and kept[-1][0] >= start:
                    kept.pop()
                if kept and start < kept[-1][1]:
                    continue
                kept.append((start, end))
            for start, end in kept:
                if group == "care_setting" and not _is_care_setting(state, start, end):
                    continue
                if (
                    group == "lab_result"
                    and LAB_PRODUCT_AFTER.match(state.lowered, end) is not None
                ):
                    continue
                state.add(group, start, end, 0.6)

    def _scan_recipient_phrases(self, state: _ScanState) -> None:
        anchors = state.hits.positions("recipient_anchor")
        if not anchors:
            return
        lowered = state.lowered
        # Every phrase that starts with "you" contains a whole word of the group
        # recipient_key, and every other phrase starts with a word of
        # recipient_other_key. A window without such a word cannot contain the phrase,
        # so its search is skipped. Ordinary mail that mentions "your session" or "your
        # exam" rarely has them.
        you_keys = state.hits.starts("recipient_key")
        other_keys = state.hits.starts("recipient_other_key")
        if not you_keys and not any(
            _any_between(anchors, key - _PHRASE_AFTER + 1, key + _PHRASE_BEFORE + 1)
            for key in other_keys
        ):
            return
        # Merge the windows around anchors so that each character is searched once.
        windows: list[list[int]] = []
        for anchor in anchors:
            window_start = max(anchor - _PHRASE_BEFORE, 0)
            window_end = min(len(lowered), anchor + _PHRASE_AFTER)
            if windows and window_start <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], window_end)
            else:
                windows.append([window_start, window_end])
        for window_start, window_end in windows:
            if _any_between(you_keys, window_start, window_end):
                for match in _YOU_PHRASE.finditer(lowered, window_start, window_end):
                    self._add_phrase(state, match)
            # _OTHER_PHRASE has no literal prefix, so a search would try it at every
            # position of the window. It is tried only where its key words start.
            index = bisect.bisect_left(other_keys, window_start)
            searched_to = window_start
            while index < len(other_keys) and other_keys[index] < window_end:
                key_start = other_keys[index]
                index += 1
                if key_start < searched_to:
                    continue
                other = _OTHER_PHRASE.match(lowered, key_start, window_end)
                if other is not None:
                    self._add_phrase(state, other)
                    searched_to = other.end()

    @staticmethod
    def _add_phrase(state: _ScanState, match: re.Match[str]) -> None:
        start = match.start()
        if start > 0 and state.lowered[start - 1].isalnum():
            return
        weight = _RECIPIENT_WEIGHTS[match.lastgroup or ""]
        state.add("recipient_health", start, match.end(), weight)

    def _scan_custom(self, state: _ScanState) -> None:
        text = state.text
        for rule in self._custom_rules:
            for match in rule.pattern.finditer(text):
                start, end = match.span()
                if start == end:
                    continue
                if start > 0 and text[start - 1].isalnum():
                    continue
                if end < len(text) and text[end].isalnum():
                    continue
                if rule.keywords is not None:
                    context = state.lowered[max(0, start - self._window) : start]
                    if not rule.keywords.search(context).spans:
                        continue
                state.add(rule.name, start, end, 0.9)


MAX_FINDINGS = 100_000
"""Findings kept per text. Each costs about 270 bytes while the text is scanned, so a
10 MB part of nothing but diagnosis codes ("dx E11.9 dx E11.9 ...", 1.1 million
findings) took 296 MB before this limit. The scan of a text stops at the limit, and
the text is reported as not fully scanned."""


class _FindingLimitReached(Exception):
    """Raised by ``_ScanState.add`` at ``MAX_FINDINGS`` to end the scan of a text."""


class _ScanState:
    """Mutable per-call state of one scan; never shared between threads."""

    __slots__ = (
        "_last_end",
        "_starts",
        "findings",
        "hits",
        "list_rows",
        "lowered",
        "text",
        "ties",
        "window",
    )

    def __init__(self, text: str, lowered: str, hits: KeywordHits, window: int) -> None:
        self.text = text
        self.lowered = lowered
        self.hits = hits
        self.window = window
        self.findings: list[Finding] = []
        # Offsets of lab values and clinical shorthand, which tie a nearby name to
        # health information (see people.scan_people).
        self.ties: list[int] = []
        # The list lines of the whole text (people.find_list_rows), once a step has
        # searched for them.
        self.list_rows: list[re.Match[str]] | None = None
        self._last_end: dict[str, int] = {}
        self._starts: set[int] = set()

    def add(self, category: str, start: int, end: int, confidence: float) -> None:
        if len(self.findings) >= MAX_FINDINGS:
            raise _FindingLimitReached
        self.findings.append(_make_finding(category, start, end, confidence))
        self._last_end[category] = end
        self._starts.add(start)

    def found_any(self, categories: frozenset[str]) -> bool:
        """Return whether a finding of one of ``categories`` was added. The steps ask
        this before they read every finding, which in dense texts are many."""
        return not categories.isdisjoint(self._last_end)

    def covered(self, position: int) -> bool:
        """Return whether a finding already starts at ``position`` (the same token
        found by the digit pass and again after its label)."""
        return position in self._starts

    def keyword_before(
        self,
        group: str,
        position: int,
        window: int | None = None,
        allow_list: tuple[str, ...] = (),
    ) -> bool:
        """Return whether a keyword of ``group`` ends within the window before
        ``position`` with at most one line break in between, or whether the candidate
        continues a list of same-category findings ("CPT 99213, 99214")."""
        size = self.window if window is None else window
        keyword_end = self.hits.any_before(group, position, size)
        if keyword_end is not None and self.text.count("\n", keyword_end, position) <= 1:
            return True
        for category in allow_list:
            last = self._last_end.get(category)
            if last is not None and 0 < position - last <= _LIST_GAP:
                gap = self.text[last:position]
                if gap.strip(" ,;/&") in ("", "and", "or"):
                    return True
        return False

    def keyword_near(self, group: str, start: int, end: int) -> bool:
        """Return whether a keyword of ``group`` is before the candidate (as in
        ``keyword_before``) or starts within a few characters after it on the same
        line ("536221234 (SSN)")."""
        if self.keyword_before(group, start):
            return True
        keyword_start = self.hits.any_after(group, end, _KEYWORD_AFTER)
        return keyword_start is not None and "\n" not in self.text[end:keyword_start]


def _is_resident_patient(text: str, match: re.Match[str]) -> bool:
    """Return whether a name after "resident" is a care home's resident: written after
    a label separator ("Resident: Name") and not a physician in training ("Resident:
    Jane Kim, MD", "Resident: Omar Haddad (PGY-2)")."""
    start, end = match.span("labelled")
    if start < 0:
        return False
    if is_clinician(text, start, end):
        return False
    return _TRAINEE_AFTER.match(text, end, end + 12) is None


def _is_care_setting(state: _ScanState, start: int, end: int) -> bool:
    """Return whether a care_setting keyword hit names a place or person of care:
    not "Dr." as a street suffix ("4410 Medical Center Dr."), not a street named after
    a care setting ("Medical Center Dr.", "Hospital Rd"), and not a clinic of another
    trade ("writing clinic", "law clinic")."""
    word = state.lowered[start:end]
    if word == "dr.":
        return _NAME_AFTER_TITLE.match(state.text, end) is not None
    if _STREET_AFTER.match(state.lowered, end) is not None:
        return False
    if word == "clinic":
        before = _WORD_BEFORE.search(state.lowered, max(0, start - 20), start)
        return before is None or before.group(1) not in _OTHER_CLINICS
    return True


def _blank_line_between(text: str, label_end: int, value_start: int) -> bool:
    """Return whether more than one line break separates a label from its value, which
    ends the label ("MRN:", a blank line, "40318276")."""
    return text.count("\n", label_end, value_start) > 1


# A trade or a business before "Lic #" on its line: the licence is the business's.
_TRADE_BEFORE = re.compile(
    r"\b(?:plumbing|plumber|electric|electrical|electrician|roofing|construction|"
    r"contractors?|builders?|hvac|heating|landscaping|pest control|inc|llc|ltd|co)\b"
    r"\.?,?[ \t]*(?:state[ \t]+)?(?:lic|lic#|lic #)$"
)


def _is_short_licence_label(lowered: str, label_end: int) -> bool:
    """Return whether the licence label ending at ``label_end`` is "Lic", "Lic#" or
    "Lic #", with any run of spaces or a line break read as one space."""
    label = " ".join(lowered[max(0, label_end - 6) : label_end].split())
    return label.endswith(_SHORT_LICENCE_LABELS)


def _any_between(positions: list[int], start: int, end: int) -> bool:
    """Return whether the sorted ``positions`` include one in [start, end)."""
    index = bisect.bisect_left(positions, start)
    return index < len(positions) and positions[index] < end


def _inside_guid(text: str, start: int, end: int) -> bool:
    window_start = max(0, start - 36)
    window_end = min(len(text), end + 36)
    return any(
        match.start() <= start < match.end()
        for match in _GUID.finditer(text, window_start, window_end)
    )


def _ends_group(text: str, end: int, chain_end: int) -> bool:
    return end >= chain_end or text[end] not in _ASCII_ALNUM


def _ends_token(text: str, end: int) -> bool:
    return end >= len(text) or not text[end].isalnum()


def _continues_number(text: str, start: int, end: int, separator: str) -> bool:
    """Return whether the match is part of a longer number grouped the same way."""
    if end + 1 < len(text) and text[end] == separator and text[end + 1].isdigit():
        return True
    if start >= 2 and text[start - 1] == separator and text[start - 2].isdigit():
        return True
    return False


def _digits_after(text: str, end: int, separator: str) -> int:
    """Return how many digits follow ``separator`` at ``end`` (0 without the separator)."""
    if end >= len(text) or text[end] != separator:
        return 0
    count = 0
    while end + 1 + count < len(text) and text[end + 1 + count].isdigit():
        count += 1
    return count


def _digits_before(text: str, start: int, separator: str) -> bool:
    return start >= 2 and text[start - 1] == separator and text[start - 2].isdigit()


def _is_inside_longer_number(text: str, start: int, end: int) -> bool:
    """Return whether digits continue across a comma or dot ("1,234,567", "3.14159")."""
    if start >= 2 and text[start - 1] in ",." and text[start - 2].isdigit():
        return True
    if end + 1 < len(text) and text[end] in ",." and text[end + 1].isdigit():
        return True
    return False


def _looks_like_zip(text: str, start: int, end: int) -> bool:
    if _STATE_BEFORE.search(text, max(0, start - 6), start) is not None:
        return True
    return end + 4 < len(text) and text[end] == "-" and text[end + 1 : end + 5].isdigit()


def _plausible_birth_year(date_text: str) -> bool:
    parts = _DATE_SEPARATOR.split(date_text)
    year_text = parts[0] if len(parts[0]) == 4 else parts[2]
    if len(year_text) == 2:
        return True
    return 1900 <= int(year_text) <= _this_year()


def _this_year() -> int:
    return datetime.date.today().year
