"""Keyword lists (package data) and a one-pass whole-word matcher over them.

All keyword lists are compiled into one Aho-Corasick automaton (pyahocorasick), so a
text is read once whatever the number of keywords. A hit counts only on whole-word
boundaries: "lic" does not match inside "duplicate".
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
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
    _automaton: ahocorasick.Automaton = field(init=False, repr=False)
    _longest: int = field(init=False, repr=False, default=1)
    """Characters in the longest keyword."""

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
        self._longest = max((len(key) for key in by_word), default=1)

    def search(self, lowered: str) -> KeywordHits:
        """Find every whole-word keyword in ``lowered`` (already lower-cased, same
        offsets as the original text)."""
        spans: dict[str, list[tuple[int, int]]] = {}
        ends: dict[str, list[int]] = {}
        length = len(lowered)
        # The whole-word checks are written out (not calls to _is_word_char) because
        # this loop runs once per automaton hit, the commonest event in a scan.
        # Short texts go to the automaton directly: resuming a generator per hit costs
        # more than the whole-word checks below.
        hits = self._automaton.iter(lowered) if length <= _PIECE else self._hits(lowered)
        for last, (size, groups, word_start, word_end) in hits:
            start = last - size + 1
            end = last + 1
            if word_start and start > 0:
                before = lowered[start - 1]
                if before.isalnum() or before == "_":
                    continue
            if word_end and end < length:
                after = lowered[end]
                if after.isalnum() or after == "_":
                    continue
            for group in groups:
                group_spans = spans.get(group)
                if group_spans is None:
                    spans[group] = [(start, end)]
                    ends[group] = [end]
                else:
                    group_spans.append((start, end))
                    ends[group].append(end)
        if not spans:
            return _NO_HITS
        # Automaton hits arrive ordered by end offset, which "any_before" needs.
        return KeywordHits(spans, ends)

    def _hits(self, lowered: str) -> Iterator[tuple[int, tuple[int, tuple[str, ...], bool, bool]]]:
        """Yield the automaton's (last index, value) hits over ``lowered`` in order.

        pyahocorasick (2.3) copies the whole text to 4 bytes per character before it
        searches, so a 25 MB text part cost 100 MB more. Long texts are therefore
        searched in pieces. Each piece starts ``_longest - 1`` characters before the
        positions it reports, so the automaton reaches them in the same state as in one
        pass. Each hit is reported once, by the piece that contains its last character.
        """
        length = len(lowered)
        if length <= _PIECE:
            yield from self._automaton.iter(lowered)
            return
        overlap = self._longest - 1
        for first in range(0, length, _PIECE):
            offset = max(0, first - overlap)
            for last, value in self._automaton.iter(lowered[offset : first + _PIECE]):
                if last + offset >= first:
                    yield last + offset, value


_NO_HITS = KeywordHits({}, {})

_PIECE = 1 << 20
"""Characters searched in one automaton pass (see KeywordMatcher._hits). Its copy takes
4 MB."""
