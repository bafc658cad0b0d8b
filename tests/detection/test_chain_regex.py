"""The combined chain regex finds the same chains as its two readable patterns."""

from __future__ import annotations

import re
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from postveil.detection import scanner

CHAIN = re.compile(scanner._CHAIN_PATTERN)
PLAIN_CHAIN = re.compile(scanner._PLAIN_CHAIN_PATTERN)

# Digits, the separators a chain may contain, letters and line breaks, weighted
# towards digits so that phone numbers, dates and identifiers occur often.
CHAIN_TEXT = st.text(alphabet="0123456789" * 4 + "-/. ,:xAZ\n", max_size=60)

EXAMPLES = [
    "call 312-555-0142 or 555 0142",
    "born 1970-01-31, seen 3/14/2025 and 03/14/25",
    "SSN 536-22-1234 and 536 22 1234",
    "312-555-0142-7 and 312-555-01427 and 312.555.0142x",
    "2026-09-15T13:00 and 2026-09-15 13",
    "card 4111 1111 1111 1111 exp 01/29",
    "NDC 12345-678-90, CPT 99213, E11.9",
]


def reference_chains(text: str) -> list[tuple[int, int, bool]]:
    return [
        (match.start(), match.end(), PLAIN_CHAIN.fullmatch(text, *match.span()) is not None)
        for match in CHAIN.finditer(text)
    ]


def combined_chains(text: str) -> list[tuple[int, int, bool]]:
    return [
        (match.start(), match.end(), match.lastgroup == "plain")
        for match in scanner._CHAIN.finditer(text)
    ]


def test_chain_regex_examples() -> None:
    for text in EXAMPLES:
        assert combined_chains(text) == reference_chains(text), text


@settings(max_examples=400, deadline=None)
@given(CHAIN_TEXT)
def test_chain_regex_matches_reference(text: str) -> None:
    assert combined_chains(text) == reference_chains(text)


def test_long_chain_regex_memory_stays_small() -> None:
    # One line of 1 MB of "1234 1234 ..." is one chain. A greedy repeat of its groups
    # kept backtracking state per group: 39 MB with Python 3.11.
    text = "1234 " * 200_000
    tracemalloc.start()
    try:
        chains = [match.span() for match in scanner._CHAIN.finditer(text)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chains == [(0, len(text) - 1)]
    assert peak < 1_000_000
