"""Keyword search over long texts in pieces finds exactly what one pass finds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postveil.detection import keywords
from postveil.detection.keywords import KeywordMatcher, load_builtin_keywords

MATCHER = KeywordMatcher(load_builtin_keywords())
WORDS = sorted({word.lower() for words in load_builtin_keywords().values() for word in words})
FILLERS = ["", " ", "  ", "\n", ", ", "-", "x", "ab", "e11.9 ", "type 2 ", "_"]


def hits(text: str) -> dict[str, list[tuple[int, int]]]:
    return {group: list(spans) for group, spans in MATCHER.search(text.lower()).spans.items()}


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(FILLERS)), max_size=60),
    piece_size=st.integers(min_value=1, max_value=80),
)
def test_piece_search_matches_one_pass(pieces: list[str], piece_size: int) -> None:
    text = "".join(pieces)
    whole = hits(text)
    original = keywords._PIECE
    keywords._PIECE = piece_size
    try:
        assert hits(text) == whole
    finally:
        keywords._PIECE = original


@pytest.mark.parametrize("piece_size", [1, 5, 27, 28, 29, 1000])
def test_keyword_across_piece_boundary(piece_size: int) -> None:
    text = "patient was seen for congestive heart failure and type 2 diabetes mellitus. " * 40
    whole = hits(text)
    original = keywords._PIECE
    keywords._PIECE = piece_size
    try:
        assert hits(text) == whole
    finally:
        keywords._PIECE = original
    assert whole
