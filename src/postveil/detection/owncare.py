"""The recipient's own care, in the words a clinician or a pharmacy writes: "your
naltrexone runs out next week", "your colonoscopy is scheduled for Friday", "your
haemoglobin was 9.8".

The phrases of scanner._RECIPIENT_PHRASES name the message's kind ("your lab results
are ready"). Mail from a clinician or a pharmacy more often names the drug, test or
procedure itself. This step reads each such health word that "your" owns, and counts
it when the same sentence pins it to the reader: a date or a booking, a supply that
runs out or ships, a measured value, or a dose. Newsletters write "your insulin" and
"your cholesterol" too, but in general terms ("if your LDL is over 160", "get your
flu shot this week"), so conditions and invitations before "your" do not count.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postveil.detection.scanner import _ScanState

# Keyword groups of the health words "your" can own.
OWN_CARE_GROUPS = ("medication", "procedure", "condition", "lab_test", "lab_result")

# Words allowed between "your" and the health word: timing, order and dosing words, a
# number ("your 2 remaining doses"), a duration ("your 6-week"), and adjectives of the
# kinds medical words take ("laparoscopic", "annual", "elective", "prescribed"). A noun
# such as "plan", "doctor" or "dog's" ends the search, because the health word is then
# not the reader's ("your dog's carprofen", "your plan covers MRI").
_MODIFIER = (
    r"(?:next|last|latest|recent|most|upcoming|scheduled|planned|current|new|daily|weekly|"
    r"monthly|morning|evening|nightly|bedtime|usual|regular|remaining|first|second|third|"
    r"final|follow-up|repeat|annual|routine|elective|outpatient|home|"
    r"shipment|supply|refill|refills|prescription|order|delivery|course|dose|doses|dosage|"
    r"injection|infusion|of|the|for|from|at|after|"
    r"[0-9]+(?:-[a-z]+)?|"
    r"[a-z]+(?:ic|al|ive|ary|ous|ed|oid)"
    r")"
)
# A lookahead at the start of a pattern in this module names the characters that every
# match starts with. It changes no match, but a search then passes over other
# positions with one test instead of trying the whole pattern there.

# "your", up to three modifiers and the word before "your", ending where the health
# word starts. Searched in the lower-cased text; a single line break counts as a space.
_YOUR_BEFORE = re.compile(
    r"\b(?=[a-z])(?:\b(?P<lead>[a-z]+)(?:[ ]|\r?\n))?\b(?P<your>your)(?:[ ]|\r?\n)"
    r"(?P<modifiers>(?:" + _MODIFIER + r"(?:[ ]|\r?\n)){0,3})$"
)
# Characters before a health word searched for "your".
_YOUR_REACH = 60

# Words before "your" that make the sentence general: a condition ("if your A1c is
# over 7"), advice ("ask your doctor", "talk to your") or an invitation to book ("get
# your flu shot on Saturday", "schedule your mammogram by December 31").
_GENERAL_LEADS = frozenset(
    "if when whether unless once while ask tell talk discuss schedule book get make request "
    "reserve order protect manage check know understand track lower improve control boost "
    "bring plan find compare renew test measure screen".split()
)
# Words anywhere in the sentence before "your" that make it general: an invitation to
# an event or a course ("Join our free workshop on managing your diabetes next week",
# "Learn more about your diabetes on Tuesday") or storage advice ("Store your insulin in
# the fridge until Friday").
_GENERAL_CLAUSE = re.compile(
    r"\b(?:join|workshop|webinar|class|classes|seminar|course|tips?|learn|event|register|"
    r"sign up|how to|ways to|managing|store|storing|protect|if|whether)\b"
)
# Characters before "your" searched for the start of its sentence.
_CLAUSE_REACH = 120
# Maximum number of health words after "your" read per text. Each costs a few regular
# expression calls, so without the limit a part of nothing but "your metformin, your
# metformin, ..." costs about 2 s a megabyte. Mail has a few.
_MAX_CHECKS = 1000

# "know" before "your" is general ("know your numbers"), except in "let you know",
# which informs the reader ("to let you know your repeat of sertraline is made up").
_LET_YOU_KNOW = re.compile(r"\blet(?:ting)? you know (?=your\b)")

# Words before "your" that give advice unless a dose makes it an instruction to one
# person: "take your insulin before meals" is general, "take your lisinopril 10 mg each
# morning" is not.
_DOSE_ONLY_LEADS = frozenset("take keep start continue".split())

# Modifiers that are a supply of the drug: "your next shipment of Humira".
_SUPPLY_MODIFIERS = frozenset("shipment supply refill refills delivery".split())

_WEEKDAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Tests named after an element are also run on soil, water, ore and food ("your
# potassium came back at 180"), so the reader's own needs a clinical unit in its
# sentence ("your potassium came back at 5.9 mmol/L").
_ELEMENTS = frozenset(
    "potassium sodium calcium magnesium lithium iron phosphorus chloride zinc copper lead "
    "glucose".split()
)
_CLINICAL_UNIT = re.compile(
    r"(?:[^.\n]|\.(?=[0-9]))*?\b(?:mmol/l|meq/l|mg/dl|g/dl|umol/l|\u00b5mol/l)"
)

# A dose: "500 mg", "2 tablets".
_DOSE_PATTERN = r"\b[0-9]+(?:\.[0-9]+)?[ ]?(?:mg|mcg|units|ml|tablets?|capsules?|pills?|puffs?)\b"
_DOSE = re.compile(_DOSE_PATTERN)
# Anchors: words after the health word, in the same sentence, that pin it to the reader.
_ANCHOR = re.compile(
    # A booking: "is scheduled", "has been moved", "is due".
    r"\b(?:is|are|was|were|has been|have been|'s)(?:[ ]|\r?\n)(?:now |still |also )?"
    r"(?:scheduled|booked|confirmed|set for|planned|rescheduled|moved|due|overdue|"
    r"incomplete|complete|completed)\b"
    # Healing: "until your hernia repair has healed".
    r"|\b(?:heals|healed|has healed|is healing|recovers|has recovered)\b"
    # A step of care done for the reader: "has been added to your record", "have been
    # sent to the pharmacy", "is made up".
    r"|\b(?:is|are|was|were|has been|have been)(?:[ ]|\r?\n)(?:now |also |just )?"
    r"(?:added|recorded|sent|faxed|filled|dispensed|made up|approved|authori[sz]ed|"
    r"renewed|received|reviewed|back(?! in stock| on (?:sale|the shelves)))\b"
    # A date or day: "on Friday", "this Thursday", "until December 15", "on 12/18".
    # "from January 1" and "by December 31" are left out: plan years and deadlines.
    rf"|\b(?:on|for|this|next|until|after|before)(?:[ ]|\r?\n)"
    rf"(?:{_WEEKDAY}\b|{_MONTH}[ ][0-9]{{1,2}}\b|[0-9]{{1,2}}/[0-9]{{1,2}}\b)"
    r"|\b(?:tomorrow|tonight|this morning|this afternoon|this evening|next week|last week)\b"
    # A supply: "runs out", "is ready", "ships on".
    r"|\b(?:runs?|ran|running)(?:[ ]|\r?\n)(?:out|low)\b"
    r"|\b(?:is|are)(?:[ ]|\r?\n)(?:ready|on its way|on the way|delayed|on hold|back-?ordered)\b"
    r"|\b(?:ships|shipped|will ship|has shipped)\b"
    rf"|{_DOSE_PATTERN}"
)
# Care the reader had, earlier in the sentence than "your": "the twelve physical
# therapy sessions you attended ... following your rotator cuff repair".
_PAST_CARE = re.compile(
    r"\byou (?:attended|received|underwent|were seen|were treated|were admitted|"
    r"were discharged|were prescribed)\b"
)
# A measured value, for tests only: "was 9.8", "came back at 7.2", "is now 140".
_VALUE = re.compile(
    r"\b(?:was|were|came back|came in|measured|read|returned|is now|is still|has come down to"
    r"|went up to|went down to|dropped to|rose to|fell to)(?:[ ]|\r?\n)(?:at |as )?[<>]?[0-9]"
)
# The words that may follow a health word that is the head of its phrase: a verb, a
# preposition or conjunction, a time word, a dose or supply word, or a word of care
# ("your gallbladder surgery"). Any other word makes the health word a modifier of
# something else ("your stress test environment", "your lithium carbonate order",
# "her wound care protocol"), and the step skips it. Punctuation and a line's end are
# fine too.
HEAD_FOLLOWERS = frozenset(
    "is was are were has have had will would should can could may might must did does do "
    "came comes come went goes go runs ran ships shipped arrives arrived starts started "
    "needs need looks looked showed shows back got gets became "
    "with on for at from to in and or but after before until since by this next last "
    "today tonight tomorrow yesterday again now still also as so that which because "
    "when while where though although if put late early overnight earlier later "
    "monday tuesday wednesday thursday friday saturday sunday i you he she we they it "
    "dose doses dosage level levels result results reading readings value number count "
    "prescription refill refills supply tablets tablet pills pill capsules mg mcg units "
    "appointment appt procedure surgery visit infusion injection shot shots treatment "
    "vaccine vaccination jab booster series injections infusions appointments visits "
    "sessions procedures "
    "therapy flare diagnosis test tests scan scans check follow-up "
    "leaves left arrive arrives arriving due expires expired ends ended kicked kicks wore wears "
    "works worked helped helps seems seemed caused causes made makes kept keeps stays stayed "
    "dropped rose fell increased decreased changed every each daily twice once nightly "
    "weekly".split()
)
_NEXT_WORD = re.compile(r"[ \t]*(?:\r?\n[ \t]*)?([a-z][a-z'\-]*)")


def is_head(lowered: str, end: int) -> bool:
    """Return whether the health word ending at ``end`` heads its phrase: it is
    followed by punctuation, a line's end or a word of HEAD_FOLLOWERS."""
    match = _NEXT_WORD.match(lowered, end)
    return match is None or match.group(1) in HEAD_FOLLOWERS


def is_veterinary(state: _ScanState) -> bool:
    """Return whether the text has words of veterinary mail (keyword group
    ``veterinary``), where "your" drug and "his" condition are an animal's."""
    return "veterinary" in state.hits.spans


# The end of a sentence: a full stop, question or exclamation mark not inside a
# number or after a title ("Dr."), or a blank line.
_SENTENCE_END = re.compile(
    r"(?=[.!?\r\n])"
    r"(?:(?<!\bdr)(?<!\bmr)(?<!\bms)(?<!\bmrs)(?<!\bst)(?<!\bvs)(?<!\bno)[.!?](?![0-9])"
    r"|\r?\n[ \t]*\r?\n)"
)
# Characters after a health word searched for the end of its sentence.
_SENTENCE_REACH = 140


def scan_own_care(state: _ScanState) -> None:
    """Add a ``recipient_health`` finding for each health word that "your" owns and
    that its sentence pins to the reader."""
    lowered = state.lowered
    if "your" not in lowered or is_veterinary(state):
        return
    spans = state.hits.spans
    checks = 0
    for group in OWN_CARE_GROUPS:
        for start, end in spans.get(group, ()):
            before = _YOUR_BEFORE.search(lowered, max(0, start - _YOUR_REACH), start)
            if before is None:
                continue
            if before.group("lead") in _GENERAL_LEADS and not _LET_YOU_KNOW.search(
                lowered, max(0, before.start() - 16), before.end("your")
            ):
                continue
            checks += 1
            if checks > _MAX_CHECKS:
                return
            if not is_head(lowered, end):
                continue
            your = before.start("your")
            if _GENERAL_CLAUSE.search(lowered, _sentence_start(lowered, your), your) is not None:
                continue
            if (
                lowered[start:end].split()[0] in _ELEMENTS
                and _CLINICAL_UNIT.match(lowered, end, end + _SENTENCE_REACH) is None
            ):
                continue
            limit = min(len(lowered), end + _SENTENCE_REACH)
            stop = _SENTENCE_END.search(lowered, end, limit)
            sentence_end = stop.start() if stop is not None else limit
            modifiers = before.group("modifiers").split()
            if before.group("lead") in _DOSE_ONLY_LEADS:
                if _DOSE.search(lowered, end, sentence_end) is None:
                    continue
            elif (
                _SUPPLY_MODIFIERS.isdisjoint(modifiers)
                and _ANCHOR.search(lowered, end, sentence_end) is None
                and (
                    group not in ("lab_test", "lab_result")
                    or _VALUE.search(lowered, end, sentence_end) is None
                )
                and _PAST_CARE.search(lowered, _sentence_start(lowered, your), your) is None
            ):
                continue
            state.add("recipient_health", your, end, 1.0)
            state.ties.append(start)


def _sentence_start(lowered: str, position: int) -> int:
    """Return where the sentence around ``position`` starts, looking back at most
    _CLAUSE_REACH characters."""
    low = max(0, position - _CLAUSE_REACH)
    ends = (lowered.rfind(mark, low, position) for mark in (". ", "! ", "? ", "\n\n"))
    return max([low, *(end + 1 for end in ends if end >= 0)])
