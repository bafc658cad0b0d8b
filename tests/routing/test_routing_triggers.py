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


ALL_DEFAULT_TAGS = [*CONFIG.escalate_tags, *CONFIG.method_tags]


@pytest.mark.parametrize("tag", ALL_DEFAULT_TAGS)
@pytest.mark.parametrize(
    "written",
    [
        "[{word}]",
        "[ {word} ]",
        "[{word} ]",
        "[ {word}]",
        "[   {word}\t]",
        "[\u00a0{word}\u00a0]",
        "[{WORD}]",
        "[ {Word} ]",
    ],
)
def test_spaces_inside_brackets_match(tag: str, written: str) -> None:
    word = tag[1:-1]
    form = written.format(word=word, WORD=word.upper(), Word=word.capitalize())
    triggers = find_triggers(f"Re: lab {form} results", [], CONFIG)

    assert triggers.tags == (tag,)
    assert triggers.cleaned_subject == "Re: lab results"


@pytest.mark.parametrize(
    "subject",
    [
        "(secure) results",
        "secure: results",
        "secure results",
        "[secure results",
        "secure] results",
        "[ sec ure ] results",
        "[securee] results",
        "[scure] results",
        "[[secure results",
        "[secure}",
        "{secure}",
        "<secure>",
        "[\nsecure] results",
    ],
)
def test_other_forms_do_not_match(subject: str) -> None:
    triggers = find_triggers(subject, [], CONFIG)

    assert triggers.tags == ()
    assert triggers.escalated is False
    assert triggers.cleaned_subject is None


@pytest.mark.parametrize(
    ("subject", "cleaned"),
    [
        ("[ secure ] Lab results", "Lab results"),
        ("Lab results [secure ]", "Lab results"),
        ("Lab [ secure] results", "Lab results"),
        ("Lab[ secure ]results", "Labresults"),
        ("Lab  results,  2 pages [ secure ]", "Lab  results,  2 pages"),
        ("Re:\tLab [secure] [ pgp ] results", "Re:\tLab results"),
        ("[ secure ][ pgp ] Lab", "Lab"),
        ("Befund für [ secure ] Jürgen", "Befund für Jürgen"),
        ("[ secure ]", ""),
        ("[[secure]] x", "x"),
        ("x ( [secure] [pgp] ) y", "x y"),
        ("[Ext] [[secure]] x", "[Ext] x"),
        ("[] [secure] x", "[] x"),
    ],
)
def test_tag_removed_with_its_spaces(subject: str, cleaned: str) -> None:
    assert find_triggers(subject, [], CONFIG).cleaned_subject == cleaned


@pytest.mark.parametrize(
    ("configured", "subject", "matches"),
    [
        ("{phi}", "{ phi } note", True),
        ("( phi )", "(phi) note", True),
        ("<phi>", "< PHI> note", True),
        ("#phi", "# phi note", False),
        ("#phi", "#PHI note", True),
        ("[send secure]", "[ send secure ] note", True),
        ("[send secure]", "[send  secure] note", False),
    ],
)
def test_custom_tag_spacing(configured: str, subject: str, matches: bool) -> None:
    config = RoutingSection(escalate_tags=[configured], method_tags={})
    triggers = find_triggers(subject, [], config)

    assert triggers.tags == ((configured,) if matches else ())
    assert triggers.cleaned_subject == ("note" if matches else None)


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
