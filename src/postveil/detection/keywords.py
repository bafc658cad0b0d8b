"""Keyword lists (package data) and a one-pass whole-word matcher over them.

All keyword lists are compiled into one Aho-Corasick automaton (the C module
_wordscan), so a text is read once whatever the number of keywords. A hit counts only
on whole-word boundaries: "lic" does not match inside "duplicate". The automaton
checks the boundaries itself, so Python code runs per accepted hit only.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import NamedTuple

import yaml

from postveil.detection.categories import KEYWORD_GROUPS

try:
    from postveil.detection._wordscan import Automaton
except ModuleNotFoundError as error:
    if error.name != "postveil.detection._wordscan":
        raise
    # A source tree on PYTHONPATH, or a copy of one, has no compiled module until
    # pip builds it, and the bare import error does not say so.
    raise ModuleNotFoundError(
        "postveil's C module postveil.detection._wordscan is not built in "
        f"{os.path.dirname(__file__)}: install postveil with pip, or run 'make setup' "
        "in a checkout, which compiles it (needs gcc and the Python headers, Debian "
        "package python3-dev)",
        name=error.name,
    ) from error


def load_builtin_keywords() -> dict[str, list[str]]:
    """Read data/context.yaml and data/health.yaml into {group: [keyword, ...]}.

    The health words are written in American spelling; each also matches in British
    spelling ("haemoglobin", "oedema", "paediatrics"), see ``british_spellings``.
    """
    groups: dict[str, list[str]] = {}
    data_dir = resources.files("postveil.detection") / "data"
    for name in ("context.yaml", "health.yaml"):
        loaded = yaml.safe_load((data_dir / name).read_text(encoding="utf-8"))
        for group, words in loaded.items():
            words = [str(word) for word in words]
            if name == "health.yaml":
                words += [variant for word in words for variant in british_spellings(word)]
                if group in _PLURAL_GROUPS:
                    words += [plural for word in words for plural in plurals(word)]
            groups.setdefault(group, []).extend(words)
    unknown = set(groups) - KEYWORD_GROUPS
    if unknown:
        raise ValueError(f"keyword data names unknown groups: {sorted(unknown)}")
    return groups


# American spellings of medical word parts and their British forms. A pattern that
# starts or ends with \b applies only at the start or end of a word, so "hem" changes
# "hemoglobin" but not "them", and "hemi-" (hemiplegia) keeps its spelling.
_BRITISH = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bhem(?=[ao])", "haem"),  # hemoglobin, hematology, hemorrhage
        # anemia, leukemia, ischemic, hyperlipidemia, hypercholesterolemia, septicemia,
        # uremia, hypokalemia, hyponatremia, toxemia, viremia, bacteremia, hypocalcemia,
        # hypoxemia; not "academic", "epidemic" or "systemic".
        (
            (
                r"(?:(?<=\ban)|(?<=terol)|(?<=leuk)|(?<=isch)|(?<=lipid)|(?<=ptic)|(?<=\bur)"
                r"|(?<=kal)|(?<=natr)|(?<=tox)|(?<=vir)|(?<=ter)|(?<=lc)|(?<=ox))emi(?=as?\b|c\b)"
            ),
            "aemi",
        ),
        (r"glycem", "glycaem"),  # glycemic control
        (r"\bedema", "oedema"),
        (r"\besophag", "oesophag"),
        (r"\bestrogen", "oestrogen"),
        (r"\bfet(?=al\b|us\b)", "foet"),
        (r"\bped(?=iatric)", "paed"),
        (r"orthoped", "orthopaed"),
        (r"gynec", "gynaec"),
        (r"\banesthe", "anaesthe"),
        (r"\bcesarean", "caesarean"),
        (r"\bceliac", "coeliac"),
        (r"(?<=[a-z])(rrh|pn)ea\b", r"\1oea"),  # diarrhea, dyspnea, apnea
        (r"tumor", "tumour"),
        (r"\bcenter\b", "centre"),
        (r"counseling", "counselling"),
        (r"counselor", "counsellor"),
        (r"behavior", "behaviour"),
        (r"(?<=[a-z]{3})iz(?=e\b|ed\b|ation\b)", "is"),  # hospitalized, immunization
    )
)


def british_spellings(word: str) -> list[str]:
    """Return the British spellings of an American-spelled health keyword, if any.

    >>> british_spellings("hemoglobin a1c")
    ['haemoglobin a1c']
    """
    variant = word.lower()
    for pattern, replacement in _BRITISH:
        variant = pattern.sub(replacement, variant)
    return [variant] if variant != word.lower() else []


# Groups whose words also match in the plural ("chest pains", "stents", "biopsies").
# Drug names, care settings and treatment words are written singular or are already
# listed in both forms.
_PLURAL_GROUPS = frozenset({"condition", "procedure", "lab_result"})


def plurals(word: str) -> list[str]:
    """Return the regular English plural of a health keyword's last word, if it has
    one that differs from the keyword.

    >>> plurals("chest pain"), plurals("biopsy"), plurals("abscess"), plurals("diabetes")
    (['chest pains'], ['biopsies'], ['abscesses'], [])
    """
    word = word.lower()
    last = word.rsplit(" ", 1)[-1]
    if not last.isalpha() or len(last) < 3:
        return []
    if last.endswith(("ss", "x", "ch", "sh")):
        return [word + "es"]
    if last.endswith(("s", "is", "ia", "itis", "ed", "ing", "al", "ic", "ous")):
        return []
    if last.endswith("y") and last[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    return [word + "s"]


def lower_same_length(text: str) -> str:
    """Lower-case ``text`` one character for one, so offsets stay aligned.

    ``str.lower`` turns U+0130 (capital I with dot above) into "i" and a combining
    dot, and only the "i" is kept. Keywords and texts both go through here, so a
    keyword written "İzmir" matches "İZMİR" and "izmir" in a text.
    """
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(char.lower()[0] for char in text)


def normalise_keyword(word: str) -> str:
    """Lower-case a keyword and collapse runs of whitespace to one space."""
    return " ".join(lower_same_length(word).replace("\u2019", "'").split())


class KeywordHits:
    """Whole-word keyword hits in one text, by group.

    ``spans`` lists (start, end) pairs in order of end offset and ``ends`` their end
    offsets in the same order. The start offsets of a group, in ascending order, are
    sorted on first use, because most scans never look at them. That cache is written
    without a lock, so an instance belongs to one scan and one thread.
    """

    __slots__ = ("_starts", "ends", "spans")

    def __init__(
        self, spans: Mapping[str, list[tuple[int, int]]], ends: Mapping[str, list[int]]
    ) -> None:
        self.spans = spans
        self.ends = ends
        self._starts: dict[str, list[int]] = {}

    def starts(self, group: str) -> list[int]:
        """Return the start offsets of ``group``'s hits in ascending order."""
        pairs = self.spans.get(group)
        if not pairs:
            # Not cached, so the shared empty result (_NO_HITS) is never written to.
            return []
        starts = self._starts.get(group)
        if starts is None:
            starts = sorted(start for start, _ in pairs)
            self._starts[group] = starts
        return starts

    def count(self, group: str) -> int:
        return len(self.spans.get(group, ()))

    def positions(self, group: str) -> list[int]:
        return self.starts(group)

    def any_before(self, group: str, position: int, window: int) -> int | None:
        """Return the end offset of the nearest hit of ``group`` that ends within
        ``window`` characters before ``position``, or ``None``."""
        ends = self.ends.get(group)
        if not ends:
            return None
        index = bisect.bisect_right(ends, position) - 1
        if index >= 0 and ends[index] >= position - window:
            return ends[index]
        return None

    def any_after(self, group: str, position: int, window: int) -> int | None:
        """Return the start offset of the nearest hit of ``group`` that starts within
        ``window`` characters after ``position``, or ``None``."""
        starts = self.starts(group)
        if not starts:
            return None
        index = bisect.bisect_left(starts, position)
        if index < len(starts) and starts[index] <= position + window:
            return starts[index]
        return None


@dataclass
class KeywordMatcher:
    """Compiled keyword lists. Immutable after construction and safe to share between
    threads: searching only reads the automaton."""

    groups: Mapping[str, Iterable[str]]
    _automaton: Automaton = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_word: dict[str, set[str]] = {}
        for group, words in self.groups.items():
            for word in words:
                key = normalise_keyword(word)
                if key:
                    by_word.setdefault(key, set()).add(group)
        names = sorted({group for groups in by_word.values() for group in groups})
        number = {name: index for index, name in enumerate(names)}
        entries = [
            (key, tuple(number[group] for group in sorted(groups)))
            for key, groups in by_word.items()
        ]
        self._automaton = Automaton(entries, names)

    def search(self, lowered: str) -> KeywordHits:
        """Find every whole-word keyword in ``lowered`` (lower-cased by
        ``lower_same_length``), up to ``MAX_HITS`` of them. U+2019 in the text matches
        an apostrophe in a keyword."""
        return self.search_text(lowered).hits

    def search_text(self, lowered: str) -> KeywordSearch:
        """Like ``search``, and also find the first ASCII digit and whether every hit
        was kept. The same pass over the text finds all three."""
        spans, ends, first_digit, complete = self._automaton.search(lowered, MAX_HITS)
        if spans is None or ends is None:
            return KeywordSearch(_NO_HITS, first_digit, complete)
        # Hits arrive ordered by end offset, which "any_before" needs.
        return KeywordSearch(KeywordHits(spans, ends), first_digit, complete)


class KeywordSearch(NamedTuple):
    """The result of one pass of the keyword automaton over a text."""

    hits: KeywordHits
    first_digit: int
    """Offset of the first ASCII digit, or -1 when the text has none."""
    complete: bool
    """False when the text had more than ``MAX_HITS`` keyword hits and only the first
    ``MAX_HITS`` were kept."""


MAX_HITS = 200_000
"""Keyword hits kept per text. Each kept hit costs about 200 bytes while the text is
scanned, so a 10 MB part of nothing but keywords ("pt pt pt ...") would otherwise take
over 600 MB. The scanner reports a text with more hits as not fully scanned."""

_NO_HITS = KeywordHits({}, {})
