"""A person and their health in one sentence: "Edith in room 12 refused her donepezil",
"Tom Reilly ... His GP has him off for two weeks with depression", "My dad, Harold
Finch ... He takes 5mg warfarin every evening".

The cue-based steps of people.py find names next to a label, a clinical cue or an age.
Mail from families, care homes, schools and HR names the person in plain prose, and
gives their health in the same sentence or in the next one with "he" or "she". This
step reads the sentence around each health finding for the person it is about: a
courtesy title and surname, a given name and surname, a relative ("my husband", "your
mum"), or a given name alone (data/given_names.txt). A capitalised word that opens the
sentence and is followed by a verb of a person ("Okonkwo refused") counts too, in a
text that the scanner's gate lets through for another cue (a pronoun, a title, a
given name). A pronoun in the sentence refers to such a person earlier in the
paragraph. In every case a verb of illness or care, a verb of having or taking, or a
pronoun must tie the person to the health word ("Nina has confirmed supply of
metformin" does not).

A health word in a sentence about someone's work or an event ("Tom Reilly will talk
about diabetes at the conference") is a topic, not their health. So sentences with
words of work, events and publicity are skipped. The health word must also head its
phrase: "her diabetes research" is not her diabetes.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from postveil.detection.keywords import given_names
from postveil.detection.owncare import is_head, is_veterinary
from postveil.detection.people import (
    HEALTH_EVIDENCE,
    NOT_NAME_WORDS,
    RANKS,
    TOPIC,
    Candidate,
    after_greeting,
    is_clinician,
    name_after_room,
    name_is_plausible,
    narrative_context,
)

if TYPE_CHECKING:
    from postveil.detection.scanner import _ScanState

# Letters of any script: an upper-case one (a lower-case letter outside ASCII matches
# too, and _usable checks the case), a lower-case one, and any.
_UP = r"[^\W\d_a-z]"
_LO = r"[^\W\d_A-Z]"
_LETTER = r"[^\W\d_]"
# One capitalised word of a name: "Lee", "McDonald", "O'Neill", "O’Neil", "René",
# "Łukasz". people.py's _WORD reads ASCII letters only, for its older rules.
_WORD = rf"{_UP}(?:{_LO}+(?:['\u2019\-]?{_UP}{_LO}+)?|['\u2019]{_UP}{_LO}+)(?![^\W_])"
# A courtesy title and surname, a full name, or a relative of the writer or reader.
# A name is one space apart, not followed by another capitalised word ("Blue Cross
# Blue Shield"), not the head of a list line ("Jonas Ekberg - living with atrial
# fibrillation") and not a place before its state ("Hood River, Oregon").
_NAME_END = rf"(?! {_UP}| *[-:\u2013(]|, ?{_UP}{_LETTER})"
# A courtesy title may head a line or an aside ("the lady in 22 - Mrs. Abernathy -
# fell"), so only the other endings apply to it.
_TITLED_END = rf"(?! {_UP}|, ?{_UP}{_LETTER})"
# A lookahead at the start of a pattern in this module names the characters that every
# match starts with. It changes no match, but a search then passes over other
# positions with one test instead of trying the whole pattern there.
_PERSON = re.compile(
    rf"(?=[^\W\d_a-z]|[myoh])(?:"
    rf"(?<!{_LETTER})(?P<titled>M(?:rs?|s|x|iss)\.? {_WORD}(?: {_WORD})?){_TITLED_END}"
    rf"|(?<!{_LETTER})(?P<full>{_WORD}(?: [A-Z]\.)? {_WORD}){_NAME_END}"
    r"|(?i:\b(?P<relative>(?:my|your|our|his|her) +(?:mom|mum|mother|dad|father|husband|wife|"
    r"son|daughter|child|baby|grandmother|grandfather|grandma|grandpa|granny|nan|nana|"
    r"sister|brother|partner|aunt|uncle|fiance|fianc\u00e9e?|stepson|stepdaughter)))\b)"
)
_GROUP_AFTER = re.compile(
    r"(?:'s|\u2019s) (?:class|team|group|office|ward|department|practice|list|caseload|"
    r"patients|clients|residents|pupils|students)\b"
)
# A capitalised word right before a name, with one space.
_CAPITALISED_BEFORE = re.compile(rf"(?<!{_LETTER})(?P<word>{_UP}{_LETTER}*) $")
# A word in title case. Given names are read only in title case, not in capitals
# ("AMA PRA credits") or lower case.
# It reads the first capital and then looks behind it, so that it starts with a
# character class, which a search skips to quickly.
_CAPITALISED = re.compile(
    rf"{_UP}(?<![\w'\u2019\-]{_UP}){_LO}+(?:[-'\u2019]{_LETTER}{_LO}+)?(?!{_LETTER})"
)
# A capitalised word after a name: the name goes on (given name and surname).
_NAME_AFTER = re.compile(rf" {_UP}{_LO}")
# Verbs of what a person does or has, after a capitalised word that opens a sentence.
_VERBS = (
    r"has|had|is|was|refused|refuses|takes|took|needs|needed|started|went|fell|came|got|"
    r"seems|seemed|felt|feels|complained|told|said|missed|won't|wouldn't|didn't|can't|"
    r"couldn't|hasn't|isn't|wasn't|tested|became|developed|cut|broke|injured|hurt"
)
# A capitalised word that opens a sentence, then a verb of a person or where they
# stay: "Okonkwo refused", "Edith in room 12 refused", "Ella in Year 4".
_OPENING_NAME = re.compile(
    rf"(?P<name>{_WORD})(?: +(?:in (?:room|bed|bay|year|class|grade)\b|(?:{_VERBS})\b))"
)
# Capitalised words that open sentences as subjects but name no one.
_NOT_GIVEN_NAMES = frozenset(
    "everyone everybody anyone anybody someone somebody nobody nothing something "
    "everything it this that there here he she they we i you who what which each every "
    "one none all some many most few several both either neither people person children "
    "adults kids parents students members employees residents patients staff clients "
    "customers users women men mum mom dad".split()
)
# Words before a person that make them anyone's: "if your child has", "when your
# mother takes", "every resident's", "imagine your mum has".
_CONDITION_BEFORE = re.compile(
    r"(?i:\b(?:if|when|whether|unless|once|every|any|each|imagine|should|suppose))[ ]+$"
)
# Verbs of illness and care that tie a health word to the person before them,
# however far apart in the sentence.
_FAR_LINK = re.compile(
    r"\b(?:diagnosed|diagnosis|recovering|recovery|recovered|suffers|suffering|suffered|"
    r"struggling with|living with|admitted|discharged|treated|tested|allergic|fractured|"
    r"broke|broken|injured|sprained|pregnant|underwent|undergoing|hospitali[sz]ed|"
    r"in hospital|collapsed|fell|a fall|seen (?:for|by|in|at)|referred|prescribed|"
    r"signed off|off\b[^.\n]{0,25}\bwith|back from|home from|came down with|"
    r"complain(?:s|ed|ing) of|dose|doses|dosage|scheduled for|booked (?:in )?for|"
    r"bed rest|placed on|under (?:my|our|the|his|her) care|care for|transported|"
    r"recommends|recommended|advised|requires|required|checked (?:himself|herself) into|"
    r"went into|gone into|"
    r"taken to|rushed to|brought in|ambulance|suspected)\b"
)
# A pronoun of the person, then "on", "for" or "off" right before the health word: "He
# has been seizure-free for six months on levetiracetam", "sent her for an X-ray".
_PRONOUN_ON = re.compile(
    r"\b(?:he|she|he's|she's|hes|shes|his|her|him)\b[^.]*\b(?:on|for|off)"
    r"(?:\s+(?:a|an|the|his|her|[0-9][0-9a-z./]*|mg(?:/[a-z]+)?)){0,3}\s*$"
)
# A verb of having or taking, then at most three small words (an article, a pronoun,
# a dose, a size or a kind), right before the health word.
_NEAR_LINK = re.compile(
    r"\b(?:has|had|have|having|got|gets|getting|is on|was on|been on|are on|still on|"
    r"now on|takes|take|taking|took|need|needs|needed|refused|refuses|started|starts|"
    r"missed|gave|given|giving|administered|his|her|their|he|she|he's|she's|hes|shes|"
    r"he'll|she'll|he's on|she's on|he is on|she is on|put|inserted|fitted)"
    r"(?:\s+(?:a|an|the|his|her|their|some|another|more|bad|severe|mild|chronic|acute|"
    r"suspected|possible|large|small|nasty|big|new|early|first|second|stage|type|"
    r"total|partial|bilateral|"
    r"one|two|three|four|five|six|"
    r"[0-9][0-9a-z./]*|mg(?:/[a-z]+)?|mcg|ml|units?|tablets?|daily|nightly|left|right)){0,3}"
    r"\s*(?:post-|pre-)?$"
)
# Being "in" a course of care: "is in", "still in", right before the health word. It
# ties only the states of _IN_STATES, because surgeons and dentists are "still in
# surgery" too.
_IN_LINK = re.compile(r"\b(?:is|was|'s|still|been|remains) in\s*$")
_IN_STATES = ("concussion protocol", "rehab", "detox", "labour")
# Words with which writers introduce themselves: "Hello, this is Walter Grimsby, I had
# my stent put in in August".
_INTRO = r"(?i:\b(?:this is|my name is|i am|i['\u2019]m|it['\u2019]s))[ ]+"
_SELF_INTRO = re.compile(_INTRO + "$")
_FIRST_PERSON = re.compile(r"\b(?:i|i've|i'm|my)\b")
# The writer's own health word: "my sertraline", "I had my stent", "I have chest
# pain", right before it.
_FIRST_PERSON_LINK = re.compile(
    r"\b(?:my|i have|i've had|i had|i've got|i'm on|i am on|i take|i'm taking)"
    r"(?:\s+(?:a|an|the|my|some|bad|severe|mild|chronic|acute|[0-9][0-9a-z./]*)){0,3}\s*\(?$"
)
# The writer's own illness or care, with a verb that ties it to them before the health
# word: "I was admitted to hospital on Monday after a severe panic attack", "I'm 14
# weeks pregnant". The writer is then the person who signs the text. "I woke up with
# a migraine" has no such verb, so that sick note is not reported.
_FIRST_PERSON_FAR = re.compile(
    r"\b(?:i|i've|i'm|i am|i was|i have been|i had|i've been)\b[^.!?\n]{0,60}?"
    r"\b(?:diagnosed|admitted|hospitali[sz]ed|in hospital|treatment for|started on|"
    r"prescribed|signed off)\b"
    # Or the writer as the subject a few words before: "I'm 14 weeks pregnant".
    r"|\b(?:i'm|i am|i was|i've been|i have been)(?:\s+[a-z0-9]+){0,3}\s*$"
)
# A line near the end of a text that is only a name: a given name, optionally with a
# surname.
_SIGNATURE = re.compile(rf"(?m)^[ \t]*(?P<name>{_WORD}(?: {_WORD})?)[ \t]*\r?$")
# Characters at the end of a text searched for the writer's signature.
_SIGNATURE_REACH = 300
# A writer who introduces themselves by full name.
_WRITER = re.compile(_INTRO + rf"(?P<name>{_WORD}(?: [A-Z]\.)? {_WORD})")
# Pronouns that refer back to a person named earlier.
# "hes" and "shes" are how quick notes write "he's" and "she's".
_PRONOUN = re.compile(r"\b(?=[hs])(?:he|she|his|her|him|hers|himself|herself|hes|shes)\b")
# Characters around a health finding searched for its sentence.
_SENTENCE_REACH = 200
# Characters before a pronoun's sentence searched for the person it refers to.
_PARAGRAPH_REACH = 300
# Health words read per text, whether their sentence is searched or skipped. Each
# searched one costs a few regular expression calls over its sentence (at most 2 *
# _SENTENCE_REACH characters) and, through a pronoun, up to 2 * _PARAGRAPH_REACH
# characters before it.
_MAX_SENTENCES = 500
# The end of a sentence: a full stop not after a title and before white space (so not
# inside a number), a blank line, a colon that ends its line, or a line break before a
# list item.
_SENTENCE_BREAK = re.compile(
    r"(?=[.!?:\r\n])"
    r"(?:(?<!\bdr)(?<!\bmr)(?<!\bms)(?<!\bmrs)(?<!\bst)[.!?](?=\s)|\r?\n[ \t]*\r?\n"
    r"|:[ \t]*\r?\n|\n(?=[ \t]*(?:[-*\u2022]|[0-9]{1,2}[.)])[ \t]))"
)
# Between a health word and the person after it: "the metformin for Mr. Okafor",
# "an MRI for Dana Hollis", but not "insulin for Dana Hollis's clinic".
_FOR_PERSON = re.compile(r" (?:for|to) (?:(?:my|your|our) )?")
# A drug name and its dose: "warfarin 5 mg", "metformin 500mg".
_DRUG_AND_DOSE = re.compile(r"[a-z][a-z\-]* [0-9]+(?:\.[0-9]+)? ?(?:mg|mcg|units|ml)\b")
# A health word that starts with its own verb ("had a fall", "threw up"), which needs
# nothing between it and the person ("your mum had a fall").
_OWN_VERB = re.compile(r"(?:had|has|threw|throwing|went|fell|broke|tore)\b")


# Keyword groups of words that count as health information only when this step ties
# them to a person, and the category each is reported as.
TIED_CATEGORIES = {"tied_condition": "condition", "tied_medication": "medication"}
# Identifiers that, found before this step, already tie the text's health
# information to a patient, so one more name changes nothing.
_NAMED_ALREADY = frozenset({"patient_name", "mrn", "date_of_birth", "member_id", "health_number"})


def sentence_candidates(state: _ScanState) -> list[Candidate]:
    """Return, as strong candidates for people.scan_people, the people that health
    findings are about. For each finding this is the person named in its sentence,
    or named earlier in the paragraph when the sentence refers to them by a pronoun,
    or the writer who introduces themselves or signs the mail. A relative is added as a
    ``patient_name`` finding here, and so is each tied word (``tied_condition``,
    ``tied_medication``) that a person was found for, as a health finding.

    A person counts only when a verb or a pronoun ties them to the health word
    (``_linked``). A text with one health word and no clinical tie is read strictly:
    a name must be in the health word's own sentence, and only a relative may be
    earlier. A story names a character in one sentence and tells one illness in the
    next ("Walter Quince, a retired judge. He has Parkinson's")."""
    if state.found_any(_NAMED_ALREADY):
        return []
    # A tied phrase that starts with a health word after "in" reads as one ("still in
    # concussion protocol"), so the health word heads the phrase although it is its
    # modifier. Without "in" it is more often a document ("has the concussion
    # protocol").
    tied_ends = {
        start: end
        for group in TIED_CATEGORIES
        for start, end in state.hits.spans.get(group, ())
        if state.lowered.endswith(" in ", 0, start)
    }
    evidence = [
        (finding.start, max(finding.end, tied_ends.get(finding.start, 0)))
        for finding in state.findings
        if finding.category in HEALTH_EVIDENCE
    ]
    if is_veterinary(state):
        return []
    starts = sorted(start for start, _ in evidence)
    strict = not narrative_context(state, starts) and not state.ties
    tied: dict[tuple[int, int], str] = {}
    for group, category in TIED_CATEGORIES.items():
        for span in state.hits.spans.get(group, ()):
            if not state.covered(span[0]):
                tied[span] = category
    if not evidence and not tied:
        return []
    evidence.extend(tied)
    evidence.sort()
    names: list[Candidate] = []
    for start, end, relative, health in _people(state, evidence, strict):
        tied_category = tied.get(health)
        if tied_category is not None and not state.covered(health[0]):
            state.add(tied_category, health[0], health[1], 0.6)
        if relative:
            if not state.covered(start):
                state.add("patient_name", start, end, 0.7)
        else:
            names.append((start, end, True, -1, 0))
    return names


def _people(
    state: _ScanState, evidence: list[tuple[int, int]], strict: bool
) -> list[tuple[int, int, bool, tuple[int, int]]]:
    """Return (start, end, is a relative, health word's span) of the person that each
    health word's sentence is about, at most one per sentence."""
    # Curly apostrophes read as straight ones ("she’s"), one character for one.
    text, lowered = state.text, state.lowered.replace("\u2019", "'")
    found: list[tuple[int, int, bool, tuple[int, int]]] = []
    seen: set[tuple[int, int]] = set()
    for count, (start, end) in enumerate(evidence):
        if count >= _MAX_SENTENCES:
            break
        if not is_head(lowered, end) and not _possessed(text, start):
            continue
        low, high = _sentence(lowered, start, end)
        if (low, high) in seen:
            continue
        if TOPIC.search(lowered, low, high) is not None:
            seen.add((low, high))
            continue
        person = _person(state, low, high, start, end)
        if person is not None and not _tied(text, lowered, person, (start, end), low):
            person = None
        pronoun = _PRONOUN.search(lowered, low, high) is not None
        if person is None and pronoun and _linked(lowered, low, start, low):
            paragraph = max(low - _PARAGRAPH_REACH, 0)
            blank = lowered.rfind("\n\n", paragraph, low)
            if blank >= 0:
                paragraph = blank
            if TOPIC.search(lowered, paragraph, low) is None:
                # The sentences before name the person. An award or a talk there
                # makes the health word a topic too.
                person = _person(state, paragraph, low, low, low, relatives_only=strict)
            reach = max(low - _PARAGRAPH_REACH, 0)
            if person is None and paragraph > reach and TOPIC.search(lowered, reach, low) is None:
                # A paragraph that names no one goes on about the person of the one
                # before ("... records from Lakeview Ortho for Ms. Hadley.\n\nShort
                # version: ... she had two epidural injections").
                person = _person(state, reach, paragraph, low, low, relatives_only=strict)
        if person is None and _FIRST_PERSON_LINK.search(lowered, low, start):
            person = _writer(state, start)
        if person is None and _FIRST_PERSON_FAR.search(lowered, low, start):
            person = _signature(state)
        if person is not None:
            # Other health words of the sentence are about the same person.
            seen.add((low, high))
            found.append((person[0], person[1], person[2] == "relative", (start, end)))
    return found


def _tied(
    text: str, lowered: str, person: tuple[int, int, str], health: tuple[int, int], low: int
) -> bool:
    """Return whether the person named in the sentence that starts at ``low`` is tied
    to its health word: by the words between them (``_linked``), by "for" before the
    person ("the metformin for Mr. Okafor"), or, for a writer who introduces
    themselves, by "I" or "my" ("this is Walter Grimsby, I had my stent put in")."""
    start, end = health
    if _linked(lowered, min(person[1], start), start, low):
        return True
    if (
        person[0] > end
        and _FOR_PERSON.fullmatch(lowered, end, person[0])
        and not lowered.startswith(("'s", "\u2019s"), person[1])
    ):
        return True
    return (
        _introduced(text, person[0]) and _FIRST_PERSON.search(lowered, person[1], start) is not None
    )


def _writer(state: _ScanState, start: int) -> tuple[int, int, str] | None:
    """Return the name with which the writer introduced themselves before ``start``
    ("This is Rhona Kilbride, I'm registered with Dr Asante"), or ``None``."""
    text = state.text
    intro = None
    for match in _WRITER.finditer(text, max(0, start - _PARAGRAPH_REACH), start):
        intro = match
    if intro is None:
        return None
    name_start, name_end = intro.span("name")
    if not _usable(text, (name_start, name_end), start, start, "full"):
        return None
    return (name_start, name_end, "full")


def _signature(state: _ScanState) -> tuple[int, int, str] | None:
    """Return the writer's name where they sign the text: a line near its end that is
    a given name, optionally with a surname ("Tobias Lindgren", "Gabi"), or ``None``."""
    text = state.text
    last = None
    for match in _SIGNATURE.finditer(text, max(0, len(text) - _SIGNATURE_REACH)):
        last = match
    if last is None:
        return None
    name_start, name_end = last.span("name")
    if fold(text[name_start:name_end].split()[0]) not in given_names():
        return None
    return (name_start, name_end, "full")


def _linked(lowered: str, anchor: int, start: int, low: int) -> bool:
    """Return whether the words from ``anchor`` to the health word at ``start`` tie
    that word to a person. ``anchor`` is the end of the person's name; when the person
    comes after the health word, the words from the sentence start ``low`` are read.

    A tie is a verb of illness or care anywhere between ("was diagnosed with",
    "fractured"), a verb of having or taking a few words before the health word ("had
    her gallbladder surgery", "takes 5mg warfarin"), or "his", "her", "he" or "she"
    right before it ("his panic attacks"). "Nina has confirmed supply of metformin" and
    "Ben has the proofs for the leaflet on diabetes" have no tie."""
    if anchor >= start:
        anchor = low
    between = lowered[anchor:start]
    if anchor > low and between == " " and _OWN_VERB.match(lowered, start):
        # The health word starts with its own verb: "your mum had a fall".
        return True
    if anchor > low and between == ", " and _DRUG_AND_DOSE.match(lowered, start):
        # A name, then a drug and its dose: "Refill request for Thomas Nguyen, warfarin
        # 5 mg".
        return True
    if _IN_LINK.search(between) is not None and lowered.startswith(_IN_STATES, start):
        # "Ben's still in concussion protocol", but not "Kapoor is still in surgery".
        return True
    return (
        _FAR_LINK.search(between) is not None
        or _NEAR_LINK.search(between) is not None
        or _PRONOUN_ON.search(between) is not None
    )


def fold(word: str) -> str:
    """Return ``word`` in lower case without accents, as data/given_names.txt writes
    names: "René" is "rene", "Łukasz" is "lukasz"."""
    if word.isascii():
        return word.lower()
    lowered = word.lower().translate(_UNDECOMPOSED)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


# Letters that Unicode does not decompose into a base letter and a mark.
_UNDECOMPOSED = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i"}
)


def _introduced(text: str, position: int) -> bool:
    """Return whether the writer introduces themselves with the name at ``position``."""
    return _SELF_INTRO.search(text, max(0, position - 14), position) is not None


def _sentence(lowered: str, start: int, end: int) -> tuple[int, int]:
    """Return the bounds of the sentence around ``start:end``.

    Looking back, the previous sentence ends at a full stop, question or exclamation
    mark before white space (not after a title: "Mrs. Abernathy"), a blank line, a
    colon at the end of a line, or a bulleted item. A numbered item ends a sentence
    only looking forward, so a sentence may reach back over one."""
    reach = max(0, start - _SENTENCE_REACH)
    low = reach
    for mark in _BACK_MARKS:
        found = lowered.rfind(mark, reach, start)
        while found >= 0 and mark[0] == "." and _title_before(lowered, reach, found):
            # "Mrs. Abernathy": the full stop of a title ends no sentence.
            found = lowered.rfind(mark, reach, found)
        if found >= 0 and found + len(mark) > low:
            low = found + len(mark)
    high = min(len(lowered), end + _SENTENCE_REACH)
    stop = _SENTENCE_BREAK.search(lowered, end, high)
    if stop is not None:
        high = stop.start()
    return low, high


# A title right before a full stop.
_TITLE_BEFORE = re.compile(r"\b(?:mr|mrs|ms|mx|dr|st|prof|miss)$")
# Characters that a match of _TITLE_BEFORE can start before its end: the longest
# title, and the line break that "$" may stand before.
_TITLE_REACH = len("miss") + 1


def _title_before(lowered: str, low: int, position: int) -> bool:
    """Return whether ``_TITLE_BEFORE.search(lowered, low, position)`` finds a title."""
    # That search would try the pattern at every character from ``low`` on, but a
    # match ends at ``position`` or one line break before it.
    start = max(low, position - _TITLE_REACH)
    return _TITLE_BEFORE.search(lowered, start, position) is not None


# Ends of the sentence before a health word, searched backwards with str.rfind.
_BACK_MARKS = (
    ". ",
    ".\n",
    ".\r\n",
    "! ",
    "!\n",
    "!\r\n",
    "? ",
    "?\n",
    "?\r\n",
    "\n\n",
    "\n\r\n",
    ":\n",
    ":\r\n",
    "\n- ",
    "\n* ",
    "\n\u2022 ",
)


def _possessed(text: str, start: int) -> bool:
    """Return whether the health word follows a possessive ("my husband's dialysis")."""
    before = text[max(0, start - 3) : start]
    return before.endswith(("'s ", "\u2019s "))


def _person(
    state: _ScanState, low: int, high: int, start: int, end: int, relatives_only: bool = False
) -> tuple[int, int, str] | None:
    """Return the span and kind of the person named in ``text[low:high]`` whom the
    health finding at ``start:end`` is most likely about: the last one before it, or
    else the first one after it. With ``relatives_only``, only a relative counts.

    The kinds are:
    - ``relative``: "my dad", "your mum";
    - ``full``: a given name and surname;
    - ``titled``: a courtesy title and surname;
    - ``room``: a name after a room or bed number (people.name_after_room);
    - ``given``: a given name of data/given_names.txt alone;
    - ``opening``: another capitalised word that opens the sentence with a verb."""
    text = state.text
    people: list[tuple[int, int, str]] = []
    for match in _PERSON.finditer(text, low, high):
        kind = match.lastgroup or "full"
        if relatives_only and kind != "relative":
            continue
        span = match.span(kind)
        if _usable(text, span, start, end, kind):
            people.append((*span, kind))

    if not relatives_only:
        people.extend(_room_names(state, low, high))
        people.extend(_given_names(text, low, high, start, end, people))

    if people:
        before = [person for person in people if person[1] <= start]
        if before:
            return max(before)
        return min(people)
    if relatives_only:
        return None
    return _opening_name(text, low, high, start, end)


def _room_names(state: _ScanState, low: int, high: int) -> list[tuple[int, int, str]]:
    """Return the names after a room or bed number in ``text[low:high]``: "bed 12
    (Harlan) pulled his IV", "rm 4 - mrs okafor"."""
    text = state.text
    names: list[tuple[int, int, str]] = []
    for cue_start, cue_end in state.hits.spans.get("room_cue", ()):
        if not low <= cue_end < high:
            continue
        name = name_after_room(text, cue_start, cue_end, high)
        if name is not None:
            names.append((*name, "room"))
    return names


def _given_names(
    text: str, low: int, high: int, start: int, end: int, people: list[tuple[int, int, str]]
) -> list[tuple[int, int, str]]:
    """Return the given names standing alone in ``text[low:high]``, outside the spans
    of ``people`` already found."""
    names = given_names()
    found: list[tuple[int, int, str]] = []
    for word in _CAPITALISED.finditer(text, low, high):
        name_start, name_end = word.span()
        if any(first <= name_start < last for first, last, _ in people):
            continue
        if fold(text[name_start:name_end]) not in names or _NAME_AFTER.match(text, name_end):
            # Not a given name, or the given name of a full name read above.
            continue
        if _usable(text, (name_start, name_end), start, end, "given"):
            found.append((name_start, name_end, "given"))
    return found


def _opening_name(
    text: str, low: int, high: int, start: int, end: int
) -> tuple[int, int, str] | None:
    """Return a capitalised word that opens the sentence with a verb ("Okonkwo
    refused"), or ``None``."""
    opening = _OPENING_NAME.match(text, _skip_space(text, low), high)
    if opening is None:
        return None
    name = opening.group("name")
    if name.lower() in _NOT_GIVEN_NAMES or not name_is_plausible(name):
        return None
    if start <= opening.start() < end:
        return None
    return (*opening.span("name"), "opening")


def _usable(
    text: str,
    span: tuple[int, int],
    start: int,
    end: int,
    kind: str,
) -> bool:
    """Return whether the person of ``kind`` at ``span`` may be the one that the
    health finding at ``start:end`` is about."""
    # Checks for every kind of person: where they stand next to the health word.
    if start <= span[0] < end:
        return False
    if (
        kind != "relative"
        and 0 <= start - span[1] <= 1
        and _OWN_VERB.match(text[start : start + 8].lower()) is None
    ):
        # The name of a product or a unit right before the health word ("GlucoSure
        # Plus blood glucose test strips"), unless the health word starts with its own
        # verb ("Jonah Pike broke his wrist").
        return False
    if _CONDITION_BEFORE.search(text, max(0, span[0] - 12), span[0]) is not None:
        # "if your child has a severe allergy": any reader's child.
        return False
    if _GROUP_AFTER.match(text, span[1]) is not None:
        # The person whose class or team it is ("Mrs Patel's class has had several
        # children off with a stomach bug").
        return False

    if kind in ("relative", "room"):
        # A relative, or a name after a room or bed number, which ward notes write
        # in lower case too.
        return True

    # Checks for a name written in title case.
    if not text[span[0]].isupper():
        return False
    name = text[span[0] : span[1]]
    if not name_is_plausible(name) or is_clinician(text, *span):
        return False
    before = _CAPITALISED_BEFORE.search(text, max(0, span[0] - 20), span[0])
    if before is not None and before.group("word").lower() not in NOT_NAME_WORDS:
        # Part of a longer run of capitalised words ("Blue Cross Blue Shield"), but
        # not after a sentence opener ("Today Edith refused her donepezil").
        return False
    first = name.split()[0].lower()
    if after_greeting(text, span[0]) or first in RANKS:
        return False
    # Two capitalised words are a person's name only when the first is a given name
    # ("Managing Type 2 Diabetes", "Weathered Wood" shingles, "Dr Appiah"). A courtesy
    # title needs none ("Mrs Adeyemi").
    return kind != "full" or fold(first) in given_names()


def has_given_name(text: str, start: int = 0, end: int | None = None) -> bool:
    """Return whether ``text[start:end]`` has a word in title case that is a given
    name."""
    names = given_names()
    for match in _CAPITALISED.finditer(text, start, len(text) if end is None else end):
        word = match.group()
        if word[0].isupper() and fold(word) in names:
            return True
    return False


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n\"'(":
        position += 1
    return position
