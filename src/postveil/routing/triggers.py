"""Subject tags and the trigger header: how a sender raises a message's protection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from postveil.config.routing import RoutingSection
from postveil.routing.decide import Method

_SPACES_RE = re.compile(r"[ \t]{2,}")


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

    Tags match case-insensitively anywhere in the Subject. A trigger header whose value
    is ``pgp``, ``smime`` or ``portal`` forces that method, any other value escalates.
    """
    tag_methods: dict[str, Method | None] = {tag.casefold(): None for tag in config.escalate_tags}
    for tag, method in config.method_tags.items():
        tag_methods[tag.casefold()] = Method(method)
    configured = {tag.casefold(): tag for tag in [*config.escalate_tags, *config.method_tags]}

    found: list[tuple[int, str]] = []
    cleaned = subject
    if subject is not None and tag_methods:
        # Longest tags first, so a tag that contains another one is removed whole.
        alternatives = sorted(tag_methods, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(tag) for tag in alternatives), re.IGNORECASE)
        found = [(match.start(), match.group(0).casefold()) for match in pattern.finditer(subject)]
        if found:
            cleaned = _SPACES_RE.sub(" ", pattern.sub("", subject)).strip()

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
