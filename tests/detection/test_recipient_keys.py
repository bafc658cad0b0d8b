"""The phrase search reads only where key words are, and loses nothing.

The scanner searches the recipient phrases that start with "you" only in windows
that contain a word of the keyword group ``recipient_key``. It tries the other
phrases only where a word of ``recipient_other_key`` starts. That is safe only while
every match of a "you" phrase contains a key word as a whole word, and every match of
another phrase starts with one. The tests check it on random matches of each phrase,
generated from its regular expression. They also compare the scanner's phrase
findings with a search of every window, on the generated corpus, the reviewer sets
and the hand-written set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from postveil.detection import scanner
from postveil.detection.extract import extract_message
from postveil.detection.keywords import KeywordMatcher, load_builtin_keywords, lower_same_length
from tests.detection.corpus_gen import generate

MATCHER = KeywordMatcher(load_builtin_keywords())
SCANNER = scanner.TextScanner(MATCHER)
HERE = Path(__file__).parent

PHRASES = [pattern for pattern, _ in scanner._RECIPIENT_PHRASES]


def _key_group(pattern: re.Pattern[str]) -> str:
    if pattern.pattern.startswith(r"\byou"):
        return "recipient_key"
    return "recipient_other_key"


def _key_found(lowered: str, group: str, start: int, end: int) -> bool:
    """Return whether a key word of ``group`` lies inside [start, end), or for the
    phrases that do not start with "you", starts at ``start``."""
    spans = MATCHER.search(lowered).spans.get(group, [])
    if group == "recipient_other_key":
        return any(key_start == start and key_end <= end for key_start, key_end in spans)
    return any(start <= key_start and key_end <= end for key_start, key_end in spans)


@pytest.mark.parametrize("index", range(len(PHRASES)))
def test_every_match_has_key_word(index: int) -> None:
    pattern = PHRASES[index]
    group = _key_group(pattern)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(pattern, fullmatch=True), st.sampled_from([" ", "\n", ". ", "("]))
    def check(phrase: str, before: str) -> None:
        lowered = lower_same_length(before + phrase + " and more.")
        match = pattern.match(lowered, len(before))
        # Lower-casing can change a generated character so that the phrase no longer
        # matches. The scanner would then not find it either.
        assume(match is not None)
        assert match is not None
        assert _key_found(lowered, group, match.start(), match.end()), phrase

    check()


def _phrases_in_every_window(text: str) -> set[tuple[int, int]]:
    """The phrase findings of a search of every window, as before the key words."""
    lowered = lower_same_length(text)
    hits = MATCHER.search(lowered)
    found: set[tuple[int, int]] = set()
    windows: list[list[int]] = []
    for anchor in hits.positions("recipient_anchor"):
        start = max(anchor - scanner._PHRASE_BEFORE, 0)
        end = min(len(lowered), anchor + scanner._PHRASE_AFTER)
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    for start, end in windows:
        for pattern in (scanner._YOU_PHRASE, scanner._OTHER_PHRASE):
            for match in pattern.finditer(lowered, start, end):
                if match.start() > 0 and lowered[match.start() - 1].isalnum():
                    continue
                found.add(match.span())
    return found


def _phrases_found(text: str) -> set[tuple[int, int]]:
    return {
        (finding.start, finding.end)
        for finding in SCANNER.scan(text)
        if finding.category == "recipient_health"
    }


def _texts() -> list[str]:
    texts: list[str] = []
    for _, raw, _ in generate(2026, 600):
        texts.extend(extract_message(raw).texts)
    for folder in ("reviewer", "reviewer2", "reviewer3", "handwritten"):
        for path in sorted((HERE / folder).glob("*.eml")):
            texts.extend(extract_message(path.read_bytes()).texts)
    return texts


def test_same_phrases_as_a_search_of_every_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # owncare.py adds recipient_health findings of its own, which no phrase matches.
    monkeypatch.setattr(scanner, "scan_own_care", lambda state: None)
    texts = _texts()
    with_phrases = 0
    for text in texts:
        expected = _phrases_in_every_window(text)
        assert _phrases_found(text) == expected
        with_phrases += bool(expected)
    # The comparison means something only if many texts contain phrases.
    assert with_phrases >= 100


# Words of the phrases and their neighbours, with line breaks, sentence ends and a
# paragraph break between them.
PIECES = st.sampled_from(
    [
        "your",
        "you have an",
        "you're",
        "lab",
        "test",
        "results",
        "result",
        "are",
        "is",
        "ready",
        "complete",
        "appointment",
        "appt",
        "visit",
        "session",
        "therapy",
        "with",
        "dr.",
        "dr",
        "np",
        "scheduled",
        "confirmed",
        "prescription",
        "refill",
        "reminder",
        "of",
        "upcoming",
        "claim",
        "for services",
        "was",
        "processed",
        "negative",
        "positive",
        "titer",
        "due for",
        "overdue for",
        "from",
        "blood draw",
        "on",
        "monday",
        "3",
        "at",
        "the",
        "clinic",
        ".",
        ",",
        ":",
    ]
    + ["\n", "\r\n", "\r\n\r\n"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=40))
def test_same_phrases_on_word_salad(pieces: list[str]) -> None:
    text = " ".join(pieces)
    assert _phrases_found(text) == _phrases_in_every_window(text)


def test_tightened_phrase_ends() -> None:
    # The verb before a stated result, the end of "is scheduled" and a refill after
    # "time to" are whole words, so that the key word is one too.
    assert re.search(scanner._YOU_PHRASE, "your covid test was negative")
    assert not re.search(scanner._YOU_PHRASE, "your covid test wasnegative")
    assert re.search(scanner._YOU_PHRASE, "your dental cleaning is scheduled.")
    assert not re.search(scanner._YOU_PHRASE, "your dental cleaning is scheduledx")
    assert re.search(scanner._OTHER_PHRASE, "it is time to refill your inhaler")
    assert not re.search(scanner._OTHER_PHRASE, "it is time to refilling")
