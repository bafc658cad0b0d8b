"""Keyword lists (package data) and a one-pass whole-word matcher over them.

All keyword lists are compiled into one Aho-Corasick automaton (pyahocorasick), so a
text is read once whatever the number of keywords. A hit counts only on whole-word
boundaries: "lic" does not match inside "duplicate".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

import ahocorasick
import yaml

from postveil.detection.categories import KEYWORD_GROUPS


def load_builtin_keywords() -> dict[str, list[str]]:
    """Read data/context.yaml and data/health.yaml into {group: [keyword, ...]}."""
    groups: dict[str, list[str]] = {}
    data_dir = resources.files("postveil.detection") / "data"
    for name in ("context.yaml", "health.yaml"):
        loaded = yaml.safe_load((data_dir / name).read_text(encoding="utf-8"))
        for group, words in loaded.items():
            groups.setdefault(group, []).extend(str(word) for word in words)
    unknown = set(groups) - KEYWORD_GROUPS
    if unknown:
        raise ValueError(f"keyword data names unknown groups: {sorted(unknown)}")
    return groups


def normalise_keyword(word: str) -> str:
    """Lower-case a keyword and collapse runs of whitespace to one space."""
    return " ".join(word.lower().replace("\u2019", "'").split())


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class KeywordHits:
    """Whole-word keyword hits in one text, by group.

    ``spans`` lists (start, end) pairs in order of end offset; ``starts`` lists the
    start offsets in ascending order.
    """

    spans: Mapping[str, list[tuple[int, int]]]
    starts: Mapping[str, list[int]]
    ends: Mapping[str, list[int]]

    def count(self, group: str) -> int:
        return len(self.starts.get(group, ()))

    def positions(self, group: str) -> list[int]:
        return self.starts.get(group, [])

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
        starts = self.starts.get(group)
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
    _automaton: ahocorasick.Automaton = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_word: dict[str, set[str]] = {}
        for group, words in self.groups.items():
            for word in words:
                key = normalise_keyword(word)
                if key:
                    by_word.setdefault(key, set()).add(group)
        automaton = ahocorasick.Automaton()
        for key, groups in by_word.items():
            automaton.add_word(
                key,
                (len(key), tuple(sorted(groups)), _is_word_char(key[0]), _is_word_char(key[-1])),
            )
        automaton.make_automaton()
        self._automaton = automaton

    def search(self, lowered: str) -> KeywordHits:
        """Find every whole-word keyword in ``lowered`` (already lower-cased, same
        offsets as the original text)."""
        spans: dict[str, list[tuple[int, int]]] = {}
        length = len(lowered)
        for last, (size, groups, word_start, word_end) in self._automaton.iter(lowered):
            start = last - size + 1
            end = last + 1
            if word_start and start > 0 and _is_word_char(lowered[start - 1]):
                continue
            if word_end and end < length and _is_word_char(lowered[end]):
                continue
            for group in groups:
                spans.setdefault(group, []).append((start, end))
        if not spans:
            return _NO_HITS
        # Automaton hits arrive ordered by end offset, which "any_before" needs;
        # "any_after" needs the starts sorted.
        starts = {group: sorted(start for start, _ in pairs) for group, pairs in spans.items()}
        ends = {group: [end for _, end in pairs] for group, pairs in spans.items()}
        return KeywordHits(spans, starts, ends)


_NO_HITS = KeywordHits({}, {}, {})
