"""Message classes from triggers, the detection verdict and the sender."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from postveil.config.routing import RoutingSection
from postveil.routing import MessageClass, Method, classify, find_triggers
from postveil.routing.classify import is_bulk_sender, methods_for

CONFIG = RoutingSection(bulk_senders=["news@clinic.example", "@marketing.clinic.example"])


@dataclass(frozen=True)
class Verdict:
    sensitive: bool
    rule: str = "mrn-near-name"
    categories: dict[str, int] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("subject", "header", "sensitive", "sender", "expected"),
    [
        ("Hello", [], False, "doc@clinic.example", MessageClass.CLEAN),
        ("Hello", [], True, "doc@clinic.example", MessageClass.SENSITIVE),
        ("[secure] Hello", [], False, "doc@clinic.example", MessageClass.ESCALATED),
        ("Hello", ["1"], False, "ehr@clinic.example", MessageClass.ESCALATED),
        ("[pgp] Hello", [], True, "doc@clinic.example", MessageClass.FORCED_PGP),
        ("Hello", ["portal"], False, "ehr@clinic.example", MessageClass.FORCED_PORTAL),
        ("[smime] Hello", [], False, "news@clinic.example", MessageClass.FORCED_SMIME),
        ("Offer", [], False, "news@clinic.example", MessageClass.BULK),
        ("Offer", [], False, "NEWS@Clinic.Example", MessageClass.BULK),
        ("Offer", [], False, "x@marketing.clinic.example", MessageClass.BULK),
        ("Offer", [], False, "x@sub.marketing.clinic.example", MessageClass.CLEAN),
        ("Offer", [], True, "news@clinic.example", MessageClass.SENSITIVE),
        ("[secure] Offer", [], False, "news@clinic.example", MessageClass.ESCALATED),
    ],
)
def test_classify_table(subject, header, sensitive, sender, expected) -> None:
    triggers = find_triggers(subject, header, CONFIG)

    result = classify(triggers, Verdict(sensitive), sender, CONFIG)

    assert result.message_class is expected
    assert result.reason


def test_no_verdict_is_clean() -> None:
    result = classify(find_triggers("x", [], CONFIG), None, "doc@clinic.example", CONFIG)

    assert result.message_class is MessageClass.CLEAN


def test_sensitive_reason_names_rule() -> None:
    result = classify(find_triggers("x", [], CONFIG), Verdict(True, rule="ssn"), "a@b.example", CONFIG)

    assert result.reason == "detection rule ssn"


def test_bulk_sender_angle_brackets() -> None:
    assert is_bulk_sender("<news@clinic.example>", CONFIG.bulk_senders)
    assert not is_bulk_sender("", CONFIG.bulk_senders)


@pytest.mark.parametrize(
    ("message_class", "expected"),
    [
        (MessageClass.CLEAN, (Method.PLAIN,)),
        (MessageClass.SENSITIVE, (Method.TLS, Method.PGP, Method.SMIME, Method.PORTAL)),
        (MessageClass.ESCALATED, (Method.PGP, Method.SMIME, Method.PORTAL)),
        (MessageClass.BULK, (Method.TLS, Method.DROP)),
        (MessageClass.FORCED_PGP, (Method.PGP,)),
        (MessageClass.FORCED_SMIME, (Method.SMIME,)),
        (MessageClass.FORCED_PORTAL, (Method.PORTAL,)),
    ],
)
def test_default_method_lists(message_class, expected) -> None:
    assert methods_for(message_class, RoutingSection()) == expected
