"""The C keyword automaton finds exactly what a plain Python search finds.

The reference below finds every occurrence of each keyword with str.find and applies
the same whole-word rule, so it shares no code with the automaton.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import postveil
from postveil.detection._wordscan import Automaton
from postveil.detection.keywords import (
    KeywordMatcher,
    load_builtin_keywords,
    lower_same_length,
    normalise_keyword,
)

BUILTIN = load_builtin_keywords()
MATCHER = KeywordMatcher(BUILTIN)
WORDS = sorted({normalise_keyword(word) for words in BUILTIN.values() for word in words})
FILLERS = [
    "",
    " ",
    "  ",
    "\n",
    ", ",
    "-",
    "x",
    "ab",
    "e11.9 ",
    "type 2 ",
    "_",
    "é",
    "ß",
    "𝔘",
    "µ",
    "0",
    "\u2019",
]


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def reference(
    groups: dict[str, list[str]], text: str
) -> tuple[dict[str, list[tuple[int, int]]], int]:
    """Whole-word hits by group, each group's in order of end offset (longer keyword
    first at the same end), and the first ASCII digit."""
    by_word: dict[str, set[str]] = {}
    for group, words in groups.items():
        for word in words:
            key = normalise_keyword(word)
            if key:
                by_word.setdefault(key, set()).add(group)
    # The automaton reads U+2019 as an apostrophe and a line break as a space (so a
    # keyword continues across a wrapped line), and the replacements keep offsets.
    folded = text.replace("\u2019", "'").replace("\n", " ")
    found: list[tuple[int, int, str]] = []
    for key, key_groups in by_word.items():
        start = folded.find(key)
        while start >= 0:
            end = start + len(key)
            before_ok = not (is_word_char(key[0]) and start > 0 and is_word_char(text[start - 1]))
            after_ok = not (is_word_char(key[-1]) and end < len(text) and is_word_char(text[end]))
            if before_ok and after_ok:
                found.extend((start, end, group) for group in key_groups)
            start = folded.find(key, start + 1)
    found.sort(key=lambda hit: (hit[1], -(hit[1] - hit[0])))
    spans: dict[str, list[tuple[int, int]]] = {}
    for start, end, group in found:
        spans.setdefault(group, []).append((start, end))
    digit = re.search("[0-9]", text)
    return spans, digit.start() if digit else -1


def automaton_result(
    matcher: KeywordMatcher, text: str
) -> tuple[dict[str, list[tuple[int, int]]], int]:
    hits, first_digit, complete = matcher.search_text(text)
    assert complete
    for group, spans in hits.spans.items():
        assert hits.ends[group] == [end for _, end in spans]
    return {group: list(spans) for group, spans in hits.spans.items()}, first_digit


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(FILLERS)), max_size=60))
def test_builtin_lists_match_reference(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert automaton_result(MATCHER, text) == reference(BUILTIN, text)


KEYWORD_ALPHABET = "ab é_-.#'\u20190𝔘"


@settings(max_examples=300, deadline=None)
@given(
    groups=st.dictionaries(
        st.sampled_from(["one", "two", "three"]),
        st.lists(st.text(KEYWORD_ALPHABET, min_size=1, max_size=5), min_size=1, max_size=6),
        min_size=1,
    ),
    text=st.text(KEYWORD_ALPHABET + "cZ\n", max_size=80),
)
def test_any_lists_match_reference(groups: dict[str, list[str]], text: str) -> None:
    """Overlapping keywords, keywords inside others, keywords in several groups,
    non-ASCII keywords and texts of 1, 2 and 4 bytes per character."""
    matcher = KeywordMatcher(groups)
    assert automaton_result(matcher, text) == reference(groups, text)


def test_long_text_searched_without_the_gil_matches_reference() -> None:
    # Over 65,536 characters the search runs with the GIL released.
    text = "seen for congestive heart failure, type 2 diabetes mellitus; mrn 12 " * 2000
    assert len(text) > 1 << 16
    assert automaton_result(MATCHER, text) == reference(BUILTIN, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("duplicate", {}),
        ("lic 44", {"drivers_license": [(0, 3)]}),
        ("the patient_", {}),
        ("Résumé", {}),
        # A keyword continues across one line break, not across a paragraph break.
        ("his member\nid is", {"member_id": [(4, 13)]}),
        ("a member\n\nid is", {}),
    ],
)
def test_whole_words_only(text: str, expected: dict[str, list[tuple[int, int]]]) -> None:
    found = {
        group: list(spans)
        for group, spans in MATCHER.search(text.lower()).spans.items()
        if group in expected or not expected
    }
    assert found == expected


def test_first_digit() -> None:
    assert MATCHER.search_text("no digits here").first_digit == -1
    assert MATCHER.search_text("call ext 4 or 55").first_digit == 9
    # Digits of other scripts are not ASCII digits; the number pass ignores them too.
    assert MATCHER.search_text("٣ and 7").first_digit == 6


@pytest.mark.parametrize(
    ("entries", "names", "error"),
    [
        ([("", (0,))], ["a"], TypeError),
        ([("word", ())], ["a"], TypeError),
        ([("word", (1,))], ["a"], ValueError),
        ([("word", (0,)), ("word", (0,))], ["a"], ValueError),
        ([("word", (0,))], [1], TypeError),
        ([["word", (0,)]], ["a"], TypeError),
        # A str subclass's __hash__ could run Python code in the middle of search().
        ([("word", (0,))], [type("Name", (str,), {})("a")], TypeError),
    ],
)
def test_bad_entries_raise(entries: list[object], names: list[object], error: type) -> None:
    with pytest.raises(error):
        Automaton(entries, names)


def test_search_takes_only_str() -> None:
    with pytest.raises(TypeError):
        MATCHER._automaton.search(b"patient", 10)  # type: ignore[arg-type]


def test_too_many_distinct_characters_fail_fast() -> None:
    # 200,000 distinct characters need a table of 4e10 transitions. Failing used to
    # take seconds, because every character was numbered first by a linear search.
    keyword = "".join(chr(code) for code in range(0x20000, 0x20000 + 200_000))
    started = time.process_time()
    with pytest.raises(ValueError, match="too large"):
        Automaton([(keyword, (0,))], ["a"])
    assert time.process_time() - started < 1.0


@pytest.mark.parametrize("apostrophe", ["'", "\u2019"])
def test_curly_apostrophe_matches_keyword(apostrophe: str) -> None:
    text = f"she has alzheimer{apostrophe}s disease"
    assert MATCHER.search(text).spans.get("condition") == [(8, 19), (8, 27)]
    # A keyword written with U+2019 matches both forms as well.
    automaton = Automaton([("patient\u2019s", (0,))], ["a"])
    assert automaton.search(f"the patient{apostrophe}s name", 10)[0] == {"a": [(4, 13)]}


@pytest.mark.parametrize(
    "text",
    [
        "seen at \u0130zmir Klinik",
        "SEEN AT \u0130ZM\u0130R KL\u0130N\u0130K",
        "seen at izmir klinik",
    ],
)
def test_dotted_capital_i_keyword_matches_text(text: str) -> None:
    # str.lower makes U+0130 two characters in a keyword, while the text must keep one
    # character per character, so such a keyword used to match no text at all.
    matcher = KeywordMatcher({"care_setting": ["\u0130zmir Klinik"]})
    lowered = lower_same_length(text)
    assert len(lowered) == len(text)
    assert matcher.search(lowered).spans == {"care_setting": [(8, 20)]}


def test_hits_beyond_limit_are_dropped() -> None:
    automaton = Automaton([("pt", (0,))], ["a"])
    spans, ends, first_digit, complete = automaton.search("pt pt pt 1", 2)
    assert spans == {"a": [(0, 2), (3, 5)]}
    assert ends == {"a": [2, 5]}
    assert first_digit == 9
    assert complete is False


def test_hits_up_to_limit_are_complete() -> None:
    automaton = Automaton([("pt", (0,))], ["a"])
    assert automaton.search("pt pt", 2)[3] is True
    assert automaton.search("none here", 0) == (None, None, -1, True)


def test_negative_limit_raises() -> None:
    with pytest.raises(ValueError, match="limit"):
        MATCHER._automaton.search("pt", -1)


def test_import_without_built_module(tmp_path):
    """A source tree without the compiled module fails with the steps that build it."""
    source = Path(postveil.__file__).parent
    unbuilt = shutil.ignore_patterns("*.so", "__pycache__")
    shutil.copytree(source, tmp_path / "postveil", ignore=unbuilt)
    result = subprocess.run(
        [sys.executable, "-c", "import postveil.detection"],
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ModuleNotFoundError: postveil's C module")
    assert str(tmp_path / "postveil" / "detection") in last_line
    assert "make setup" in last_line
    assert "python3-dev" in last_line
