"""Names of people written the way clinicians write about patients, without a label.

A name alone is never a finding. These patterns describe where a name sits relative to a
keyword hit the scanner already has: an honorific, a cue word, a clinical phrase or an
age. The scanner then decides whether health information is near enough for the name
to be a patient's. The functions read a few dozen characters at keyword hits, and
search for courtesy titles and ages only in the span around health findings, so text
without health words costs nothing here.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from postveil.detection.owncare import is_head, is_veterinary

if TYPE_CHECKING:
    from postveil.detection.scanner import _ScanState

# Findings that are health information about someone: a name counts only within
# _NEAR characters of one of them.
HEALTH_EVIDENCE = frozenset(
    {
        "condition",
        "medication",
        "lab_result",
        "procedure",
        "diagnosis_code",
        "procedure_code",
        "ndc",
    }
)
_NEAR = 250
# Findings of codes, which may stand without a keyword hit in _EVIDENCE_GROUPS.
_CODE_CATEGORIES = frozenset({"diagnosis_code", "procedure_code", "ndc"})
# Keyword groups whose hits lead to those findings: health words, lab tests, and the
# keywords that codes need.
_EVIDENCE_GROUPS = (
    "condition",
    "medication",
    "procedure",
    "lab_result",
    "lab_test",
    "lab_test_unit",
    "lab_unit",
    "diagnosis_code",
    "procedure_code",
    "ndc",
    "tied_condition",
    "tied_medication",
)
# A possessive name ("Mr. Lee's") ties itself to health information that starts
# within this many characters after it.
_POSSESSIVE_REACH = 30
# A name before "was seen today" or "tested positive" ties itself to health information that
# starts within this many characters after the phrase, in the same sentence.
_PHRASE_REACH = 100
# Characters searched before a phrase or an age for the name that precedes it.
_NAME_BEFORE = 60

# One capitalised word of a name: "Lee", "McDonald", "O'Neill", "Gonzalez-Ruiz".
# Each run of lower-case letters is possessive ("++"): the word must end at a capital,
# an apostrophe, a hyphen or a character that is no letter or digit, never inside the
# run, so the matches are those of "+". A search that fails then does not try every
# shorter run, which made the list-line search 40% faster on the corpus.
_WORD = r"[A-Z](?:[a-z]++(?:['\-]?[A-Z][a-z]++)?|'[A-Z][a-z]++)(?![A-Za-z0-9])"
# Given name, optional middle initial, surname, separated by spaces only: a tab
# separates table cells, and a line break separates a greeting from the text.
_FULL = rf"{_WORD}(?: [A-Z]\.)? +{_WORD}"
_INVERTED = rf"{_WORD}, ?{_WORD}"
_HONORIFIC = r"(?:Mr|Mrs|Ms|Mx|Miss)\.?"

# A courtesy title, optional given name and the surname, then an optional possessive
# or an age ("Mrs. Noble, 67," or "Mr. Wren (59 M)"). "Dr." is not a title here: a
# doctor is not the patient. Titles are searched near health findings only, because
# as keywords "ms" and "mr" would hit inside many words ("items"). The pattern starts
# with its literal "M", which the regex engine finds quickly; the character before it
# is checked in Python.
HONORIFIC_NAME = re.compile(
    rf"M(?:rs?|s|x|iss)\.? +(?P<name>(?:{_WORD} +)?{_WORD})"
    r"(?P<possessive>'s)?"
    r"(?P<age>(?:, *|,? *\( *)[0-9]{1,3}"
    r"(?: ?(?:yo|y/o|y\.o\.|-year-old|[MF])(?![A-Za-z])|(?=[,)])))?"
)
# After a cue word ("referring", "saw your pt"): the name that follows it.
NAME_AFTER_CUE = re.compile(
    rf",? +(?:(?i:our|your|my|mutual) +)?(?:(?i:pt|patient)[.:]? +)?(?:{_HONORIFIC} +)?"
    rf"(?P<name>{_FULL})"
)
# A lookahead at the start of a pattern in this module names the characters that every
# match starts with. It changes no match, but a search then passes over other
# positions with one test instead of trying the whole pattern there.

# Before a phrase such as "was seen" or "presented with": the name that ends there,
# optionally followed by an aside in brackets ("Ravi Chandran (54M) presented with")
# or a comma ("Dana Whitcombe, DOS 10/14").
NAME_BEFORE_CUE = re.compile(
    rf"(?=[A-Z])(?<![A-Za-z])(?P<name>{_FULL})(?: *\([^()\n]{{1,25}}\))?,? +$"
)
# A date right after "DOS" or "date of service" ("DOS: 03/02/2026", "date of service
# 2.2.2026").
_DATE_AFTER = re.compile(r" *:? *[0-9]{1,4}[-/.][0-9]{1,2}")
_SERVICE_DATE_CUES = ("dos", "date of service")
# An age and sex written after a name: "62 yo", "54M", "49F", "71-year-old", also after
# "Surname, Given" as sign-out lists write it ("512 Pruitt, Lavinia 34F - DKA").
AGE_SEX = re.compile(r"[0-9]{1,3} ?(?:yo|y/o|y\.o\.|-year-old|[MF])(?![A-Za-z])")
NAME_BEFORE_AGE = re.compile(rf"(?=[A-Z])(?<![A-Za-z])(?P<name>{_FULL}|{_INVERTED}),? *\(? *$")
# After "pt" or "patient": a surname alone ("pt Delgado seen today"), or after an
# initial ("pt J. Alvarez"). Two-word names and "Surname, Given" after these words
# are found by the labelled patient-name rule.
SURNAME_AFTER_PATIENT = re.compile(
    rf"\.?:? +(?:{_HONORIFIC} +|[A-Z]\. ?)?(?P<name>{_WORD})(?! +{_WORD}|, ?{_WORD})"
)
# A table cell that holds only a name, in either order, and a row of cells pasted
# from a spreadsheet (tab-separated).
NAME_CELL = re.compile(rf" *(?:{_FULL}|{_INVERTED}) *")
_TABLE_ROW = re.compile(r"[^\n\t]*\t[^\n]*")
# A room or bed number followed by a patient's name, as ward notes and census lists
# write it: "rm 12 - mrs okafor", "bed 4 (delgado)", "Room 7: Mr. Hale", "rm 5 Gomez -
# NPO". Notes often skip capitals, so the name may be lower case after a courtesy
# title or in brackets. A bare word counts only after "rm", capitalised and followed
# by a dash, colon or comma, because after "Room", "Bed" or "Bay" it is more often a
# use, a building, a brand or a contractor ("Room 3 Jenner -", "Bed 12 Hillrom:"). It
# is a weak cue: meeting rooms, hotel rooms and kennels are written the same way
# ("Room 12 (Delgado)", "bed 1 (queen)").
# The pattern reads from the end of a room_cue keyword hit ("rm", "room", "bed", "bay").
NAME_AFTER_ROOM = re.compile(
    r" ?#? ?[0-9]{1,4}[A-Za-z]?(?: *[-:,] *| +)"
    r"(?:\( *(?P<bracketed>[A-Za-z][a-z'\-]{2,}) *\)"
    r"|(?i:mrs|mr|ms|miss)\.? +(?P<titled>[A-Za-z][a-z'\-]{2,})"
    r"|(?P<bare>[A-Z][a-z'\-]{2,})(?= *[-:,] ))"
)
# Bed and room states that ward lists write in brackets after the number.
ROOM_STATES = frozenset(
    "empty vacant clean dirty closed blocked isolation iso occupied available reserved "
    "pending admit admitted discharge discharged transfer male female private semi "
    "window door left right".split()
)
# Uses of a room that ward mail writes capitalised after its number ("rm 5 Storage -").
ROOM_USES = frozenset(
    "storage store supply supplies office kitchen pantry lounge break utility linen laundry "
    "staff nurses charting family waiting quiet meeting training server closet copy print "
    "soiled equipment meds medication treatment procedure exam conference visitor visitors".split()
)


def name_after_room(text: str, cue_start: int, cue_end: int, end: int) -> tuple[int, int] | None:
    """Return the span of the name that NAME_AFTER_ROOM reads after the room_cue hit at
    ``cue_start:cue_end``, searching up to ``end``. Return None when there is none,
    when the word there is a bed state or a room's use, or when a bare word follows
    another cue than "rm"."""
    room = NAME_AFTER_ROOM.match(text, cue_end, end)
    if room is None or room.lastgroup is None:
        return None
    group = room.lastgroup
    word = room.group(group).lower()
    if group != "titled" and word in ROOM_STATES:
        return None
    if group == "bare" and (text[cue_start:cue_end].lower() != "rm" or word in ROOM_USES):
        return None
    return room.span(group)


# A line of a list that starts with a person's name and a colon, dash or bracket: "-
# Eli Vasquez: peanut anaphylaxis, EpiPen". Such lines count only when at least
# _MIN_TABLE_ROWS of them carry health information, and only as a weak cue, because
# staff directories, speaker lists and award lists look the same ("Leah Moreno:
# diabetes educator").
# The name is _FULL or _INVERTED with their first word read once: most lines start
# with a capitalised word, and the search reads every line. A first word that could
# also end early ("Vasquez" of "Vasquez-Ruiz") is followed by a hyphen or apostrophe,
# which neither form takes next, so the matches are those of "_FULL|_INVERTED".
_LIST_ROW = (
    rf"[ \t]*(?:[-*\u2022][ \t]+)?(?P<name>{_WORD}(?:(?: [A-Z]\.)? +{_WORD}|, ?{_WORD}))"
    r"[ \t]*(?:(?::|-|\u2013) |\()"
)
_FIRST_LIST_ROW = re.compile(_LIST_ROW)
# The other lines, found after their line break: a pattern that starts with a literal
# character is searched much faster than one that starts with "^".
_NEXT_LIST_ROW = re.compile("\n" + _LIST_ROW)
# A name written "SURNAME, GIVEN" in capitals, as census and billing exports print it
# ("ESPOSITO, GLORIA"). Rows of a report count when at least _MIN_TABLE_ROWS lines pair
# such a name with a date and, after the name, a diagnosis, procedure or NDC code, in
# columns of spaces as well as tabs. Capitalised "Screening, Colon Z12.11" is a coding
# index entry and "Fairview, Oregon E11.9" a place, so the capitalised form is not read.
# The pattern reads the first capital and then looks behind it for a letter, so that
# it starts with a character class, which a search skips to quickly.
CODED_ROW_NAME = re.compile(
    r"(?P<name>[A-Z](?<![A-Za-z][A-Z])[A-Z'\-]+, ?[A-Z][A-Z'\-]+)(?![A-Za-z])"
)
_ROW_DATE = re.compile(r"(?<![0-9])[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{2,4}(?![0-9])")
# A pasted table counts when at least this many rows pair a name cell with health
# information in the same row. A single row could be a staff entry ("Dana Hollis<TAB>
# diabetes educator").
_MIN_TABLE_ROWS = 2
# Words that open a Subject about one person's care or medical paperwork, before a dash
# or colon and the person's name: "Referral - Jane Smith", "FMLA paperwork: Ortiz,
# Camila". Other openers do not count, because newsletters name speakers as "Guest
# speaker - Jane Smith" and staff mail names people as "Certification - Jane Smith, BLS".
_SUBJECT_TOPICS = (
    r"referral|referring|labs?|lab results|results|discharge|consult|consultation|intake|"
    r"admission|admit|new patient|chart|records?|fmla|medical leave|medical certification|"
    r"prior auth|authorization|auth|rx|prescription|refill|follow-?up|f/u|"
    r"imaging|radiology|pathology|biopsy|transfer|handoff|hand-off"
)
# A Subject that is a name, after any reply or forward prefixes and an optional care
# topic, optionally followed by a short description: "Re: John Smith", "FW:
# Pemberton, Gail", "Mr. Lee - labs", "Intake - Dana Hollis".
# A colon after two capitalised words is more often a column's heading than a name
# ("Coding Corner: five codes to stop using", "Clinical Pearls: SGLT2 inhibitors"), so
# only a titled name takes one.
SUBJECT_NAME = re.compile(
    rf" *(?:(?i:re|fw|fwd|aw|tr) *: *)*"
    rf"(?:(?i:{_SUBJECT_TOPICS})(?![A-Za-z])[^\n:-]{{0,30}}? *[-:] *)?"
    rf"(?:{_HONORIFIC} +(?P<titled>(?:{_WORD} +)?{_WORD})(?: *(?:[-:,(/][^\n]{{0,40}})?)?"
    rf"|(?P<name>{_FULL}|{_INVERTED})(?: *(?:[-,(/][^\n]{{0,40}})?)?) *"
)
# Credentials after a name mark a clinician or another professional, not a patient.
CREDENTIAL_AFTER = re.compile(
    r",? *(?:MD|DO|RN|NP|PA|PA-C|PharmD|DDS|DMD|PhD|MSN|BSN|LPN|CNM|FNP|MPH)(?![A-Za-z])"
)
CLINICIAN_BEFORE = re.compile(r"(?:\b(?:Dr|Doctor|Prof|Professor|Nurse)\.? +)$")
# A courtesy title in a greeting or a direct address names the recipient, not a
# patient: "Dear Mr. Chen,", "Hi Ms. Park,", "Mr. Chen, your order".
_GREETING_BEFORE = re.compile(
    r"(?i:\b(?=[dhtag])(?:dear|hi|hello|hey|thanks|thank you|attn|attention|good morning|"
    r"good afternoon|good evening)\b)[ :,!]*$"
)
_ADDRESS_AFTER = re.compile(r",? +(?:your|you|please|thanks|thank you|we|I)\b")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")

# Capitalised words that start sentences or name places, things and events, not
# people; a name with one of them is not a name ("Today Gonzalez", "Room Three").
NOT_NAME_WORDS = frozenset(
    "the this that these those our your their his her she he they we it its there here "
    "today tonight yesterday tomorrow morning afternoon evening night dear hi hello hey "
    "please thanks thank regards sincerely best kind all team staff room bed unit floor "
    "ward suite building patient patients pt doctor nurse clinic hospital pharmacy "
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december new old north south east "
    "west central saint st group center centre program programme department office "
    "board committee report results result update reminder order invoice account "
    "portal care services service health medical family general memorial "
    "emergency surgery surgical oncology cardiology radiology pathology lab labs "
    "discharge summary admission note notes plan follow "
    # Words of title-case subjects ("Re: Grand Rounds", "Annual Meeting").
    "meeting minutes agenda rounds grand club journal review dashboard newsletter annual "
    "quarterly weekly monthly daily budget training schedule policy holiday party "
    "invitation webinar conference seminar request question questions notice alert news "
    "welcome payroll benefits enrollment open quality project contract shipment delivery "
    "heart failure awareness month day week year "
    # Payers, which billing mail writes where a patient's name would go ("Blue Cross,
    # DOS 3/2/2026, CPT 99214").
    "blue shield medicare medicaid tricare aetna cigna humana anthem healthcare insurance "
    "plan".split()
)


def name_is_plausible(name: str) -> bool:
    """Return whether no word of ``name`` is a sentence opener or a common noun."""
    for word in re.split(r"[ ,.]+", name):
        if word and word.lower() in NOT_NAME_WORDS:
            return False
    return True


def is_clinician(text: str, start: int, end: int) -> bool:
    """Return whether the name at ``start:end`` is written as a clinician's
    ("Dr. Jane Hill", "Nadine Ferro, RN")."""
    if CLINICIAN_BEFORE.search(text, max(0, start - 12), start) is not None:
        return True
    return CREDENTIAL_AFTER.match(text, end, end + 12) is not None


def subject_names_person(subject: str) -> bool:
    """Return whether a Subject consists of a person's name, with reply prefixes and
    at most a short description after it."""
    match = SUBJECT_NAME.fullmatch(subject)
    return match is not None and name_is_plausible(match.group("titled") or match.group("name"))


def health_span(state: _ScanState) -> tuple[int, int] | None:
    """Return the span from _NEAR characters before the first hit of a health keyword
    group or code finding to _NEAR characters after the last, or ``None`` without
    one. Names and
    short test names are searched only there. The span is read from the keyword hits
    because the findings are many more. scan_people checks each name against the
    findings themselves."""
    spans = state.hits.spans
    first = last = -1
    for group in _EVIDENCE_GROUPS:
        group_spans = spans.get(group)
        if group_spans:
            # Hits are ordered by end offset, so these are close to the first and last
            # starts, and the _NEAR margin covers the difference.
            if first < 0 or group_spans[0][0] < first:
                first = group_spans[0][0]
            last = max(last, group_spans[-1][0])
    # A dotted diagnosis code is found without a keyword, so only its finding marks it.
    if state.found_any(_CODE_CATEGORIES):
        for finding in state.findings:
            if finding.category in _CODE_CATEGORIES:
                if first < 0 or finding.start < first:
                    first = finding.start
                last = max(last, finding.start)
    if first < 0:
        return None
    return max(0, first - _NEAR), min(len(state.text), last + _NEAR)


def scan_people(
    state: _ScanState,
    span: tuple[int, int],
    more: Callable[[_ScanState], list[Candidate]] | None = None,
) -> None:
    """Add a ``patient_name`` for every name that the text ties to health information.

    ``span`` is ``health_span``'s result. Every name needs health information within
    _NEAR characters. A strong cue needs nothing more. Strong cues are a clinical cue
    word before the name, an age after it, a table row, a possessive right before a
    health word, and a phrase such as "was seen today" followed by a health word in the
    same sentence. A name found from a weak cue (a courtesy title, "pt", "please call",
    "presented with") also needs a tie within _NEAR characters: a lab value or
    clinical shorthand.

    ``more`` returns strong candidates found by another step (sentences.py). It is
    called only when the cues above name no patient, so a census table's names are
    not counted twice.
    """
    candidates = _candidates(state, span)
    text = state.text
    evidence = sorted(
        finding.start for finding in state.findings if finding.category in HEALTH_EVIDENCE
    )
    if narrative_context(state, evidence):
        candidates.extend(_narrative_names(state, evidence))
    has_table = "\t" in text
    list_rows = _list_rows_in(state, *span)
    codes: list[int] = []
    if state.found_any(_CODE_CATEGORIES):
        codes = sorted(
            finding.start for finding in state.findings if finding.category in _CODE_CATEGORIES
        )
    has_rows = len(list_rows) >= _MIN_TABLE_ROWS or len(codes) >= _MIN_TABLE_ROWS
    if not candidates and not has_table and not has_rows:
        if more is not None:
            _add_more(state, more)
        return
    if has_table:
        candidates.extend(_table_names(text, span, evidence))
    if len(list_rows) >= _MIN_TABLE_ROWS:
        candidates.extend(_list_names(text, list_rows, evidence))
    if len(codes) >= _MIN_TABLE_ROWS:
        candidates.extend(_coded_row_names(text, span, codes))
    named = _add_names(state, candidates, evidence, sorted(state.ties))
    if not named and more is not None:
        _add_more(state, more)


def _add_more(state: _ScanState, more: Callable[[_ScanState], list[Candidate]]) -> None:
    """Add the names of another step's candidates. That step ties each name to a
    health word of its own, so the names need no health finding within _NEAR
    characters. It may also add findings itself: health words it tied to a person,
    and relatives."""
    candidates = more(state)
    _add_names(state, candidates, None, [])


def _add_names(
    state: _ScanState, candidates: list[Candidate], evidence: list[int] | None, ties: list[int]
) -> bool:
    """Add a ``patient_name`` for each candidate that its cue, the health findings and
    the ``ties`` allow, and return whether any was added. ``evidence`` is the sorted
    starts of the health findings, or ``None`` when the candidates are tied already."""
    text = state.text
    added = False
    for start, end, strong, follow_from, reach in candidates:
        if evidence is not None:
            if not _within(evidence, start - _NEAR, end + _NEAR):
                continue
            if not strong and follow_from >= 0:
                strong = _followed_in_sentence(text, evidence, follow_from, reach)
        if not strong and not _within(ties, start - _NEAR, end + _NEAR):
            continue
        if state.covered(start):
            continue
        if not name_is_plausible(text[start:end]) or is_clinician(text, start, end):
            continue
        state.add("patient_name", start, end, 0.7)
        added = True
    return added


# A name candidate: start, end, whether its cue is strong, and an offset from which a
# health finding within the given reach, in the same sentence, makes it strong
# (-1 for none).
Candidate = tuple[int, int, bool, int, int]


def _candidates(state: _ScanState, span: tuple[int, int]) -> list[Candidate]:
    """Return every name-shaped text next to a cue, table rows aside."""
    text, hits = state.text, state.hits
    span_start, span_end = span
    found: list[Candidate] = []
    # The name may end a little after the span.
    for titled in HONORIFIC_NAME.finditer(text, span_start, min(len(text), span_end + 40)):
        title_start = titled.start()
        if title_start >= span_end:
            break
        if title_start > 0 and text[title_start - 1].isalpha():
            continue
        if _GREETING_BEFORE.search(text, max(0, title_start - 24), title_start) is not None:
            continue
        if _ADDRESS_AFTER.match(text, titled.end("name")) is not None:
            continue
        strong = titled.group("age") is not None
        follow_from = titled.end() if titled.group("possessive") else -1
        found.append(
            (titled.start("name"), titled.end("name"), strong, follow_from, _POSSESSIVE_REACH)
        )

    for cue_start, cue_end in hits.spans.get("room_cue", ()):
        if not span_start <= cue_start < span_end:
            continue
        name = name_after_room(text, cue_start, cue_end, cue_end + 60)
        if name is not None:
            found.append((*name, False, -1, 0))

    for group, strong in (("name_cue", True), ("name_cue_weak", False)):
        for _, end in hits.spans.get(group, ()):
            match = NAME_AFTER_CUE.match(text, end, end + 80)
            if match is not None:
                found.append((match.start("name"), match.end("name"), strong, -1, 0))
    for group in ("name_cue_after", "name_cue_after_weak"):
        for start, end in hits.spans.get(group, ()):
            match = NAME_BEFORE_CUE.search(text, max(0, start - _NAME_BEFORE), start)
            if match is None:
                continue
            is_service_date = state.lowered.startswith(_SERVICE_DATE_CUES, start)
            if is_service_date and _DATE_AFTER.match(text, end) is None:
                # "DOS" and "date of service" name a patient's visit only before its date;
                # "Carla Mendes, DOS training" is about the operating system.
                continue
            # "was seen today" ties the name to a health word later in its sentence.
            # "presented with" is also written of teams and awards, so it never does.
            follow_from = end if group == "name_cue_after" else -1
            found.append(
                (match.start("name"), match.end("name"), False, follow_from, _PHRASE_REACH)
            )

    # A surname alone after "pt" is a weak cue, which needs a tie anyway. "Resident"
    # counts only as a label ("Resident: Name"), because hospitals' residents are doctors.
    patient_ends = [end for _, end in hits.spans.get("patient", ())] if state.ties else []
    for end in patient_ends:
        if state.lowered.endswith("resident", 0, end):
            continue
        match = SURNAME_AFTER_PATIENT.match(text, end, end + 40)
        if match is not None:
            found.append((match.start("name"), match.end("name"), False, -1, 0))

    # Ages are looked for only in texts with clinical shorthand, lab values, a phrase
    # after a name or a bed or room, where "Walter Brandt, 62 yo M", "Ravi Chandran
    # (54M) presented with" and "Bed 7 Tomas Reyes 54M" are written. The search stops
    # at every digit, which costs more than the other steps together in number-dense
    # mail.
    look_for_ages = (
        state.ties
        or "name_cue_after" in hits.spans
        or "name_cue_after_weak" in hits.spans
        or "room_cue" in hits.spans
    )
    ages = AGE_SEX.finditer(text, span_start, span_end) if look_for_ages else ()
    for age in ages:
        before = max(0, age.start() - _NAME_BEFORE)
        match = NAME_BEFORE_AGE.search(text, before, age.start())
        if match is not None:
            found.append((match.start("name"), match.end("name"), True, -1, 0))
    return found


# Before a health finding: words that make it a third person's ("his COPD flare", "her
# morphine", "she's taking prazosin", "he had a fracture"). One word may stand between
# "his" or "her" and the health word ("her breast biopsy").
_THIRD_PERSON_BEFORE = re.compile(
    r"\b(?=[hs])(?:(?:his|her)\s+(?P<between>[a-z][a-z'\-]*\s+)?"
    r"|(?:he|she)(?:'s|\u2019s|\s+(?:is|was|has|had|has been|had been))?\s+"
    r"(?:been\s+|started\s+|now\s+|also\s+|still\s+)?(?:taking|takes|on|had|has)\s+(?:a\s+|an\s+)?)$"
)
# Characters before a health finding searched for those words.
_THIRD_PERSON_REACH = 40
# Words between "his"/"her" and a health word that make it a topic of someone's work,
# not their health ("her research on diabetes"). A word after the health word does the
# same ("her diabetes research"), which owncare.is_head checks.
_NOT_OWN_HEALTH = frozenset(
    "research work study studies talk paper papers book lecture team expertise interest "
    "experience career article presentation role program programme project clinic unit "
    "ward education awareness advocacy fellowship training grant trial centre center "
    "service services nurse nurses specialist specialists educator department patients "
    "foundation charity walk fundraiser fund practice".split()
)
# Characters before a third person's health finding searched for the name they refer
# to: a full name earlier in the same paragraph ("Harold Ferris ... He went home
# Monday after his COPD flare").
_NARRATIVE_REACH = 300
_FULL_NAME = re.compile(rf"(?=[A-Z])(?<![A-Za-z])(?:{_FULL})")
# Ranks and titles that stand before a name in fiction, history and games ("Admiral
# Tobias", "Captain Biscuit"). They are checked as the first word only, because King,
# Major and Judge are surnames too ("Maria King").
RANKS = frozenset(
    "admiral captain professor lady sir lord general colonel major sergeant father sister "
    "brother saint king queen prince princess chef coach judge senator governor president "
    "mayor uncle aunt".split()
)


def _by_first_letter(alternation: str) -> str:
    """Return the regular expression ``alternation`` ("a|b|c") with its alternatives
    grouped by first letter: "rest|role|sales" becomes "r(?:est|ole)|s(?:ales)".

    A search then tries one group at each position instead of every alternative, which
    made TOPIC about four times faster. Alternatives keep their order within a group,
    and those of other groups cannot match where the text has another letter, so the
    matches do not change. Each alternative must start with a lower-case ASCII letter
    that no quantifier follows."""
    alternatives: list[str] = []
    depth = 0
    in_class = False
    current = ""
    index = 0
    while index < len(alternation):
        char = alternation[index]
        if char == "\\":
            current += alternation[index : index + 2]
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            alternatives.append(current)
            current = ""
            index += 1
            continue
        current += char
        index += 1
    alternatives.append(current)
    groups: dict[str, list[str]] = {}
    for alternative in alternatives:
        if not ("a" <= alternative[:1] <= "z") or alternative[1:2] in ("?", "*", "+", "{"):
            raise ValueError(
                f"invalid alternative {alternative!r}: it must start with a lower-case ASCII "
                "letter that no quantifier follows"
            )
        groups.setdefault(alternative[0], []).append(alternative[1:])
    return "|".join(f"{first}(?:{'|'.join(rests)})" for first, rests in groups.items())


# Words of work, events, publicity and teaching: a health word near them is a topic.
_TOPIC_WORDS = (
    r"research|study|studies|paper|article|journal|book|lecture|talk|talks|speak|"
    r"speaks|speaking|speaker|lecturer|professor|presentation|"
    r"webinar|conference|"
    r"seminar|workshop|course|training|award|awarded|grant|fellowship|expert|expertise|"
    r"specialist|specialises|specializes|specializing|specialising|career|role|hired|"
    r"joins|joined|join|lead|leads|leading|director|campaign|awareness|"
    r"fundraiser|fundraising|charity|donate|donation|sponsor|sponsored|walk|marathon|"
    r"interview|podcast|episode|novel|film|movie|character|story|scene|chapter|draft|"
    r"manuscript|plot|fiction|trial|programme|program|"
    r"guideline|guidelines|policy|blog|newsletter|tips|learn|register|"
    r"sales|market|marketing|launch|launched|product|products|price|pricing|project|"
    r"won(?!['\u2019])|"
    r"prize|competition|contest|essay|poster|experience|candidate|patients|clients|"
    r"approved|stock|recall|recalling|protocols?(?<!concussion protocol)(?<!concussion protocols)|initiative|audit|"
    r"quality|improvement|prescribing|warning|indication|indications|leaflet|leaflets|"
    # Reviews, stage, history and celebrity news: a character's or a public figure's
    # illness.
    r"stars|cast|rehearsal|last act|first act|act one|act two|act three|"
    r"archive|archives|letters|historian|century|singer|actor|actress|celebrity|"
    r"chat show|talk show|album|biography|memoir|fictional|quiz|puzzle|whodunnit|page|"
    r"pages|clue|clues|mystery|riddle|"
    r"hypothetical|scenario|volunteer|volunteers|of the year|"
    # Machines named like people: "Stanley had a heart attack, so the build queue is
    # stuck".
    r"server|servers|cpu|build|queue|reboot|rebooted|deploy|deployment|outage|process|"
    # Phishing lures and shopping.
    r"scam|phishing|fraud|gift|gifts|mother's day|father's day|shop|buy|"
    # Sports news: a professional player's injury.
    r"season|league|division|roster|playoffs?|goalkeeper|striker|quarterback|pitcher|"
    r"injured list|transfer window"
)
TOPIC = re.compile(r"\b(?:" + _by_first_letter(_TOPIC_WORDS) + r")\b")
# Third-person health findings whose preceding paragraph is searched for a name, per
# text. Each search reads up to _NARRATIVE_REACH characters, so a part of nothing but
# "she is on metformin" would otherwise cost 0.7 s a megabyte; mail has a few.
_MAX_NARRATIVE_SEARCHES = 1000
# A relative of the writer or the reader, whose care the message is about.
_RELATIVE = re.compile(
    r"\b(?=[ymo])(?:your|my|our)\s+(?:mom|mum|mother|dad|father|husband|wife|son|daughter|"
    r"child|baby|grandmother|grandfather|grandma|grandpa|granny|sister|brother|partner|aunt|"
    r"uncle)\b"
)


def narrative_context(state: _ScanState, evidence: list[int]) -> bool:
    """Return whether the text reads as care rather than a story: at least two health
    findings, or one with a care setting or treatment word, and no words of veterinary
    mail. A novel, a history lesson or a horse's sale notice names one condition of one
    character ("his gout"); a clinical note names more."""
    if is_veterinary(state):
        return False
    if len(evidence) >= 2:
        return True
    return bool(evidence) and any(
        finding.category in ("care_setting", "treatment") for finding in state.findings
    )


def _narrative_names(state: _ScanState, evidence: list[int]) -> list[Candidate]:
    """Return, as strong candidates, the full names that a paragraph goes on to tell
    the health of in the third person ("Harold Ferris ... his COPD flare", "Kateryna
    Moroz ... she's started taking prazosin"). Where the paragraph names a relative
    instead ("your mom ... her morphine"), the relative is added as a
    ``patient_name`` finding here."""
    text, lowered = state.text, state.lowered
    names: list[Candidate] = []
    ends: dict[int, int] | None = None
    searches = 0
    for start in evidence:
        before = _THIRD_PERSON_BEFORE.search(lowered, max(0, start - _THIRD_PERSON_REACH), start)
        if before is None:
            continue
        searches += 1
        if searches > _MAX_NARRATIVE_SEARCHES:
            break
        between = before.group("between")
        if between is not None and between.strip() in _NOT_OWN_HEALTH:
            continue
        if ends is None:
            ends = {
                finding.start: finding.end
                for finding in state.findings
                if finding.category in HEALTH_EVIDENCE
            }
        end = ends.get(start, start)
        if not is_head(lowered, end):
            continue
        if TOPIC.search(lowered, max(0, start - _THIRD_PERSON_REACH * 2), end + 60):
            # "Goalkeeper Anders Vik returned from his concussion and made 31 saves."
            continue
        window_start = max(0, start - _NARRATIVE_REACH)
        paragraph = max(
            lowered.rfind("\n\n", window_start, start), lowered.rfind("\n\r\n", window_start, start)
        )
        if paragraph >= 0:
            window_start = paragraph
        last = _last_match(_FULL_NAME, text, window_start, before.start())
        if last is None:
            # A relative stands for a name ("Your mom, Consuelo, ... her morphine").
            last = _last_match(_RELATIVE, lowered, window_start, before.start())
            if last is not None and not state.covered(last.start()):
                state.add("patient_name", last.start(), last.end(), 0.7)
            continue
        name_start, name_end = last.span()
        if _GREETING_BEFORE.search(text, max(0, name_start - 24), name_start) is not None:
            continue
        if last.group().split()[0].lower() in RANKS:
            continue
        names.append((name_start, name_end, True, -1, 0))
    return names


def after_greeting(text: str, position: int) -> bool:
    """Return whether a greeting is right before ``position`` ("Dear Tom Reilly")."""
    return _GREETING_BEFORE.search(text, max(0, position - 24), position) is not None


def _last_match(pattern: re.Pattern[str], text: str, start: int, end: int) -> re.Match[str] | None:
    """Return the last match of ``pattern`` in ``text[start:end]``, or ``None``."""
    last = None
    for match in pattern.finditer(text, start, end):
        last = match
    return last


def _followed_in_sentence(text: str, evidence: list[int], start: int, reach: int) -> bool:
    """Return whether a health finding starts within ``reach`` characters after
    ``start`` with no sentence end in between."""
    index = bisect.bisect_left(evidence, start)
    if index == len(evidence) or evidence[index] >= start + reach:
        return False
    return _SENTENCE_END.search(text, start, evidence[index]) is None


def _table_names(text: str, span: tuple[int, int], evidence: list[int]) -> list[Candidate]:
    """Return the name cells of tab-separated rows in ``span`` whose row also contains a
    health finding, or nothing when fewer than _MIN_TABLE_ROWS rows do."""
    names: list[Candidate] = []
    for row in _TABLE_ROW.finditer(text, *span):
        if not _within(evidence, row.start(), row.end()):
            continue
        offset = row.start()
        for cell in row.group().split("\t"):
            if NAME_CELL.fullmatch(cell):
                names.append((offset, offset + len(cell), True, -1, 0))
                break
            offset += len(cell) + 1
    return names if len(names) >= _MIN_TABLE_ROWS else []


def find_list_rows(text: str, start: int = 0, end: int | None = None) -> list[re.Match[str]]:
    """Return the list lines (``_LIST_ROW``) that start between ``start`` and ``end``."""
    if end is None:
        end = len(text)
    rows: list[re.Match[str]] = []
    if start == 0:
        first = _FIRST_LIST_ROW.match(text, 0, end)
        if first is not None:
            rows.append(first)
    rows.extend(_NEXT_LIST_ROW.finditer(text, max(0, start - 1), end))
    return rows


def whole_text_list_rows(state: _ScanState) -> list[re.Match[str]]:
    """Return ``find_list_rows(state.text)``, searched once per scan."""
    if state.list_rows is None:
        state.list_rows = find_list_rows(state.text)
    return state.list_rows


def _list_rows_in(state: _ScanState, start: int, end: int) -> list[re.Match[str]]:
    """Return ``find_list_rows(state.text, start, end)``, picked from the rows of the
    whole text when a step has searched for those already.

    A row lies within one line and its leading line break, so rows never overlap, and
    a search that stops at ``end`` finds exactly the rows of the whole text that end
    there or before. The row at the text's start (no line break before it) counts only
    when ``start`` is 0, as in find_list_rows."""
    rows = state.list_rows
    if rows is None:
        return find_list_rows(state.text, start, end)
    low = max(0, start - 1)
    text = state.text
    return [
        row
        for row in rows
        if low <= row.start()
        and row.end() <= end
        and (start == 0 or text[row.start()] == "\n")
    ]


def _list_names(text: str, rows: list[re.Match[str]], evidence: list[int]) -> list[Candidate]:
    """Return the names of list lines whose rest of line contains a health finding, as
    weak candidates, or nothing when fewer than _MIN_TABLE_ROWS lines do."""
    names: list[Candidate] = []
    for row in rows:
        line_end = text.find("\n", row.end())
        if line_end < 0:
            line_end = len(text)
        if _within(evidence, row.end(), line_end):
            names.append((row.start("name"), row.end("name"), False, -1, 0))
    return names if len(names) >= _MIN_TABLE_ROWS else []


def _coded_row_names(text: str, span: tuple[int, int], codes: list[int]) -> list[Candidate]:
    """Return the first "SURNAME, GIVEN" name of each line that has a date and a code
    finding after the name, or nothing when fewer than _MIN_TABLE_ROWS lines do."""
    names: list[Candidate] = []
    last_line_end = -1
    for match in CODED_ROW_NAME.finditer(text, *span):
        if match.start() < last_line_end:
            continue
        line_end = text.find("\n", match.end())
        if line_end < 0:
            line_end = len(text)
        line_start = text.rfind("\n", 0, match.start()) + 1
        if _within(codes, match.end(), line_end) and _ROW_DATE.search(text, line_start, line_end):
            names.append((match.start("name"), match.end("name"), True, -1, 0))
            last_line_end = line_end
    return names if len(names) >= _MIN_TABLE_ROWS else []


def _within(positions: list[int], low: int, high: int) -> bool:
    """Return whether sorted ``positions`` has a value in ``[low, high)``."""
    index = bisect.bisect_left(positions, low)
    return index < len(positions) and positions[index] < high
