"""Lab values and clinical shorthand: the scanner steps that run at their keyword hits.

A lab value is a test name followed by a number ("INR 4.2", "HbA1c came back at
9.1%"); it is a ``lab_result`` finding. A number before a clinical unit ("124 mmol/L")
and shorthand such as "hx of" or "10 mg daily" are ``clinical_context`` findings, which
weigh nothing. Both are also recorded as ties in the scan state: evidence that the
text is about one person's care, which people.py needs before it counts a name written
with an honorific as a patient's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postveil.detection.scanner import _ScanState

# After a test name, in the lower-cased text: up to three filler words or signs, then
# a number or range, then an optional unit. The fillers are those of results being
# reported ("came back at", "down to", "is"), not of targets or criteria ("below",
# "between", "by"), so "A1c below 7%" in a newsletter is no value.
_LAB_VALUE = re.compile(
    r"(?:[ \t]+(?:levels?|value|result|reading|scores?))?"
    r"(?:[ \t]*(?:is|was|of|at|now|today|from|came back|back|has|ranged|down to|up to|dropped to"
    r"|rose to|fell to|=|:|-|~)(?![a-z])){0,3}"
    r"[ \t]*[<>]?[ ]?(?P<value>[0-9]{1,4}(?:\.[0-9]{1,2})?)"
    r"(?:(?P<ratio>/[0-9]{2,3})|[ ]?(?:-|to)[ ]?[0-9]{1,4}(?:\.[0-9]{1,2})?)?(?![0-9/-]|[.,][0-9])"
    r"(?:[ ]?(?P<unit>%|mg/dl|mmol/l|meq/l|g/dl|ng/ml|pg/ml|miu/l|uiu/ml|\u00b5iu/ml|u/l|iu/l|mmhg"
    r"|ml/min|mcg/dl|ng/dl|k/ul|events/hr)(?![a-z]))?"
)
# A lab test's name followed by a product word names something a lab buys, as in a
# supplier's invoice ("HbA1c control, level 1", "lipid panel calibrator set", "Troponin
# I 0.92 ng/mL control", "glucose meter"). Between a name and a product word there may
# be up to three numbers, units, single letters or the words "x", "test" and "level".
# Any other word ("INR 4.2 on her home meter", "creatinine by enzymatic assay") makes
# it a result.
LAB_PRODUCT_AFTER = re.compile(
    r"[ ]+meters?\b"
    r"|(?:,?[ ]+(?:[0-9][0-9.,]*|[a-z]|x|tests?|levels?|%|mg/dl|mmol/l|meq/l|g/dl|ng/ml|pg/ml"
    r"|iu/l|u/l|ml)){0,3}?,?[ ]+(?:controls?|calibrators?|reagents?|kits?|cartridges?|strips|"
    r"dipsticks?|analy[sz]ers?|qc|standards?|materials?|wipes|tubes|supplies)\b"
)
# Characters after a test name searched for its value.
_VALUE_REACH = 40
# Short test names as notes write them (capitals), searched near other health
# information only. Each counts only with a unit, a percent sign or a blood-pressure
# reading. They are found with str.find, which skips text much faster than a regular
# expression whose first character can be any of several letters. One-letter and
# element names (K, Na, Cr) are left out: "K 5.9 mmol/L" still counts through its unit.
_SHORT_TESTS = ("BP", "B/P", "EF", "ALT", "AST", "BUN")


def scan_lab_values(state: _ScanState) -> None:
    """Add a ``lab_result`` for every test name with a value after it, and a
    ``clinical_context`` for every number followed by a clinical unit."""
    lowered, hits = state.lowered, state.hits
    for start, end in hits.spans.get("lab_test", ()):
        match = _LAB_VALUE.match(lowered, end, end + _VALUE_REACH)
        if match is not None and LAB_PRODUCT_AFTER.match(lowered, match.end()) is None:
            state.add("lab_result", start, match.end(), 0.9)
            state.ties.append(start)
    for start, end in hits.spans.get("lab_test_unit", ()):
        match = _LAB_VALUE.match(lowered, end, end + _VALUE_REACH)
        if match is not None and (match.group("unit") or match.group("ratio")):
            state.add("lab_result", start, match.end(), 0.9)
            state.ties.append(start)
    for start, end in hits.spans.get("lab_unit", ()):
        position = start - 1
        if position >= 0 and lowered[position] == " ":
            position -= 1
        if position >= 0 and lowered[position].isdigit():
            state.add("clinical_context", position, end, 0.5)
            state.ties.append(start)


def scan_clinical_cues(state: _ScanState) -> None:
    """Add one ``clinical_context`` for the first clinical shorthand or phrase, and
    record all of them as ties. The category weighs nothing, so one finding per text
    gives the rules all they need."""
    spans = state.hits.spans.get("clinical_cue")
    if not spans:
        return
    text = state.text
    # A cue followed by a hyphen and a digit is the prefix of a code: order number
    # "HX-55821", not "hx" (history).
    spans = [span for span in spans if _DIGIT_AFTER_HYPHEN.match(text, span[1]) is None]
    if not spans:
        return
    state.add("clinical_context", spans[0][0], spans[0][1], 0.5)
    state.ties.extend(start for start, _ in spans)


_DIGIT_AFTER_HYPHEN = re.compile(r"-[0-9]")


# Words right before a drug that tell that one person takes it: "she's on amoxicillin",
# "he takes warfarin", "was started on metformin", "started her on cefepime". "are on"
# and "using" are left out, because staff mail writes "many of our patients are on
# Ozempic" and "we are using heparin flushes". Read in the lower-cased text, ending
# where the drug's keyword starts.
_TAKES_BEFORE = re.compile(
    r"(?:\b(?:is|was|'s|\u2019s|been|still|remains|started|restarted)\s+on|"
    r"\b(?:started|restarted|put|kept|switched|continued)\s+(?:him|her|them)\s+on|"
    r"\b(?:takes|taking|took))\s+(?:his\s+|her\s+|their\s+)?$"
    # A change to someone's dose, or a dose not taken: "we increased her morphine",
    # "held his warfarin", "he refused his metoprolol".
    r"|\b(?:increased|decreased|reduced|raised|lowered|stopped|held|doubled|halved|titrated"
    r"|tapered|adjusted|refused|refuses|missed|misses|skipped|skips|forgot|forgets)\s+"
    r"(?:his|her|their)\s+$"
)
# Characters before a drug searched for those words.
_TAKES_REACH = 28


def scan_medication_ties(state: _ScanState) -> None:
    """Record a tie, and one ``clinical_context``, for every drug that the text reports
    someone as taking. Drug marketing names drugs too, but seldom whom they are for."""
    lowered = state.lowered
    found = False
    for start, _ in state.hits.spans.get("medication", ()):
        if _TAKES_BEFORE.search(lowered, max(0, start - _TAKES_REACH), start) is None:
            continue
        if not found:
            state.add("clinical_context", start, start, 0.5)
            found = True
        state.ties.append(start)


def scan_short_lab_values(state: _ScanState, span: tuple[int, int]) -> None:
    """Add a ``lab_result`` for every short test name with a unit-bearing value
    ("BP 168/94", "EF 35%", "ALT 88 U/L") inside ``span``."""
    text, lowered = state.text, state.lowered
    span_start, span_end = span
    for name in _SHORT_TESTS:
        start = text.find(name, span_start, span_end)
        while start >= 0:
            end = start + len(name)
            if _is_token(text, start, end):
                match = _LAB_VALUE.match(lowered, end, end + _VALUE_REACH)
                if match is not None and (match.group("unit") or match.group("ratio")):
                    state.add("lab_result", start, match.end(), 0.9)
                    state.ties.append(start)
            start = text.find(name, end, span_end)


def _is_token(text: str, start: int, end: int) -> bool:
    """Return whether ``text[start:end]`` is not part of a longer word or unit."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "/"):
        return False
    return end >= len(text) or not (text[end].isalnum() or text[end] == "/")
