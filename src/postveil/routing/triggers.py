"""Subject tags and the trigger header: how a sender raises a message's protection."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from postveil.config.routing import RoutingSection
from postveil.routing.decide import Method

# Opening and closing characters that make a configured tag a bracketed tag, which may
# carry spaces just inside its brackets.
_BRACKETS = {"[": "]", "(": ")", "{": "}", "<": ">"}
# Any run of whitespace other than line breaks: spaces, tabs and the no-break spaces
# that some mail programs type.
_SPACES = r"[^\S\r\n]*"


@dataclass(frozen=True)
class Triggers:
    """Protection the sender requested through the Subject and the trigger header."""

    tags: tuple[str, ...]
    """Configured tags found in the Subject, in the order they appear, as configured."""

    escalated: bool
    forced_method: Method | None
    """Method forced by a method tag or the trigger header's value; the first one wins."""

    header_trigger: bool
    """The trigger header was present (it must be removed before delivery)."""

    cleaned_subject: str | None
    """Subject with every tag removed, or None when the Subject had no tag."""


def find_triggers(
    subject: str | None, trigger_header_values: Sequence[str], config: RoutingSection
) -> Triggers:
    """Find the configured tags in ``subject`` (decoded text) and read the trigger header.

    Tags match case-insensitively anywhere in the Subject, and a bracketed tag also
    matches with spaces just inside its brackets (see :func:`tag_pattern`). A trigger
    header whose value is ``pgp``, ``smime`` or ``portal`` forces that method, any other
    value escalates.
    """
    matcher = _tag_matcher(tuple(config.escalate_tags), tuple(config.method_tags.items()))
    tag_methods = matcher.methods

    found: list[tuple[int, str]] = []
    cleaned = subject
    if subject is not None and matcher.pattern is not None:
        alternatives = matcher.alternatives
        # Each alternative is one group, so the group number names the tag that matched.
        for match in matcher.pattern.finditer(subject):
            found.append((match.start(), alternatives[(match.lastindex or 1) - 1]))
        if found:
            cleaned = remove_tags(subject, matcher.any_tag)
    configured = matcher.configured

    tags = tuple(dict.fromkeys(configured[tag] for _, tag in found))
    forced: Method | None = None
    escalated = False
    for _, tag in found:
        method = tag_methods[tag]
        if method is None:
            escalated = True
        elif forced is None:
            forced = method

    header_trigger = bool(trigger_header_values)
    for value in trigger_header_values:
        word = value.strip().casefold()
        if word in ("pgp", "smime", "portal"):
            forced = forced or Method(word)
        else:
            escalated = True

    return Triggers(
        tags=tags,
        escalated=escalated,
        forced_method=forced,
        header_trigger=header_trigger,
        cleaned_subject=cleaned if found else None,
    )


@dataclass(frozen=True)
class _TagMatcher:
    methods: dict[str, Method | None]
    """Casefolded tag -> the method it forces, or None for an escalation tag."""

    configured: dict[str, str]
    """Casefolded tag -> the tag as configured."""

    alternatives: tuple[str, ...]
    """Casefolded tags, longest first, so a tag that contains another is removed whole."""

    any_tag: str
    pattern: re.Pattern[str] | None
    """``any_tag`` compiled without regard to case; None when no tag is configured."""


@functools.lru_cache(maxsize=16)
def _tag_matcher(
    escalate_tags: tuple[str, ...], method_tags: tuple[tuple[str, str], ...]
) -> _TagMatcher:
    """Build the tag pattern of one configuration once, not once per message."""
    methods: dict[str, Method | None] = {tag.casefold(): None for tag in escalate_tags}
    for tag, method in method_tags:
        methods[tag.casefold()] = Method(method)
    configured = {tag.casefold(): tag for tag in [*escalate_tags, *(tag for tag, _ in method_tags)]}
    alternatives = tuple(sorted(methods, key=len, reverse=True))
    any_tag = "|".join(f"({tag_pattern(tag)})" for tag in alternatives)
    pattern = re.compile(any_tag, re.IGNORECASE) if alternatives else None
    return _TagMatcher(methods, configured, alternatives, any_tag, pattern)


def tag_pattern(tag: str) -> str:
    """Return the regular expression (without flags or groups) that finds ``tag``.

    A tag that starts with ``[``, ``(``, ``{`` or ``<`` and ends with the matching closing
    character is bracketed: any run of spaces may stand just inside either bracket, so
    ``[secure]`` also matches ``[ secure ]``, and a configured ``[ secure ]`` matches
    ``[secure]``. The text between the brackets, spaces between words included, must
    match as configured apart from case. Other tags match only as written, apart from case.
    """
    opening, closing = tag[:1], tag[-1:]
    if len(tag) < 2 or _BRACKETS.get(opening) != closing:
        return re.escape(tag)
    inner = tag[1:-1].strip()
    return re.escape(opening) + _SPACES + re.escape(inner) + _SPACES + re.escape(closing)


def strip_tags(text: str, config: RoutingSection) -> str:
    """Return ``text`` without the tags that ``config`` names, as the Subject loses
    them (see :func:`remove_tags`)."""
    matcher = _tag_matcher(tuple(config.escalate_tags), tuple(config.method_tags.items()))
    if matcher.pattern is None or matcher.pattern.search(text) is None:
        return text
    return remove_tags(text, matcher.any_tag)


def remove_tags(subject: str, any_tag: str) -> str:
    """Remove every tag that ``any_tag`` finds (alternatives built by :func:`tag_pattern`).

    A run of tags and the spaces around it becomes one space between two words, or
    nothing at the start or end of the Subject or between two characters it touched.
    Brackets that enclose only tags (``[[secure]]``, ``([pgp] [secure])``) are removed
    with them, one level deep. The rest of the Subject keeps its characters and spacing.
    """
    bare_run = rf"(?:{any_tag})(?:{_SPACES}(?:{any_tag}))*"
    # A bracket pair that contains nothing but tags, as in "[[secure]] x", goes with them,
    # because an empty "[]" left in the Subject means nothing to the recipient.
    enclosed_runs = [
        rf"{re.escape(opening)}{_SPACES}{bare_run}{_SPACES}{re.escape(closing)}"
        for opening, closing in _BRACKETS.items()
    ]
    tag = "|".join([*enclosed_runs, f"(?:{any_tag})"])
    tag_run = re.compile(
        rf"(?P<before>{_SPACES})(?:{tag})(?:{_SPACES}(?:{tag}))*(?P<after>{_SPACES})",
        re.IGNORECASE,
    )

    def replacement(match: re.Match[str]) -> str:
        at_edge = match.start() == 0 or match.end() == len(subject)
        spaced = bool(match.group("before") or match.group("after"))
        return " " if spaced and not at_edge else ""

    return tag_run.sub(replacement, subject)
