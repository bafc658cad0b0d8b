"""Subject tags and the trigger header."""

from __future__ import annotations

import pytest

from postveil.config.routing import RoutingSection
from postveil.routing import Method, find_triggers

CONFIG = RoutingSection()


@pytest.mark.parametrize(
    ("subject", "tags", "escalated", "forced", "cleaned"),
    [
        ("Lab results", (), False, None, None),
        ("[secure] Lab results", ("[secure]",), True, None, "Lab results"),
        ("Lab results [SECURE]", ("[secure]",), True, None, "Lab results"),
        ("Lab [Encrypt] results", ("[encrypt]",), True, None, "Lab results"),
        ("Re: [secure] x [encrypt]", ("[secure]", "[encrypt]"), True, None, "Re: x"),
        ("[pgp] scan", ("[pgp]",), False, Method.PGP, "scan"),
        ("[smime][portal] scan", ("[smime]", "[portal]"), False, Method.SMIME, "scan"),
        ("[portal] [secure] scan", ("[portal]", "[secure]"), True, Method.PORTAL, "scan"),
        ("[secure]", ("[secure]",), True, None, ""),
        ("secure without brackets", (), False, None, None),
        ("Befund für [secure] Jürgen", ("[secure]",), True, None, "Befund für Jürgen"),
        ("x[secure]y", ("[secure]",), True, None, "xy"),
        (None, (), False, None, None),
    ],
)
def test_subject_tags(subject, tags, escalated, forced, cleaned) -> None:
    triggers = find_triggers(subject, [], CONFIG)

    assert triggers.tags == tags
    assert triggers.escalated is escalated
    assert triggers.forced_method == forced
    assert triggers.cleaned_subject == cleaned
    assert triggers.header_trigger is False


@pytest.mark.parametrize(
    ("values", "escalated", "forced"),
    [
        (["yes"], True, None),
        ([""], True, None),
        (["PGP"], False, Method.PGP),
        ([" smime "], False, Method.SMIME),
        (["portal"], False, Method.PORTAL),
        (["tls"], True, None),
    ],
)
def test_trigger_header(values, escalated, forced) -> None:
    triggers = find_triggers("Report", values, CONFIG)

    assert triggers.header_trigger is True
    assert triggers.escalated is escalated
    assert triggers.forced_method == forced
    assert triggers.cleaned_subject is None


def test_subject_tag_forced_wins_over_header() -> None:
    triggers = find_triggers("[smime] x", ["pgp"], CONFIG)

    assert triggers.forced_method is Method.SMIME


def test_custom_tags_from_config() -> None:
    config = RoutingSection(escalate_tags=["{phi}"], method_tags={"#pgp": "pgp"})
    triggers = find_triggers("{PHI} note #PGP", [], config)

    assert triggers.tags == ("{phi}", "#pgp")
    assert triggers.forced_method is Method.PGP
    assert triggers.cleaned_subject == "note"


def test_regex_characters_in_tags_are_literal() -> None:
    config = RoutingSection(escalate_tags=["(.*)"], method_tags={})

    assert find_triggers("anything", [], config).tags == ()
    assert find_triggers("a (.*) b", [], config).cleaned_subject == "a b"


def test_overlapping_tags_longest_first() -> None:
    config = RoutingSection(escalate_tags=["[secure]", "[secure-pgp]"], method_tags={})

    assert find_triggers("[secure-pgp] x", [], config).tags == ("[secure-pgp]",)
