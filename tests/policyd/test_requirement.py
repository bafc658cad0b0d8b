"""The shared requirement function: a table of facts and the Postfix line each must give."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postveil.config.policyd import PolicydSection
from postveil.policyd.domains import audit_source
from postveil.tlsfacts.facts import DaneFacts, DomainFacts, StsPolicy
from postveil.tlsfacts.requirement import (
    enforced_requirement,
    mx_matches_pattern,
    record_requirement,
    tls_requirement,
)

NOW = 1_800_000_000.0
DEFAULT = PolicydSection()
DOWNGRADE_2 = PolicydSection(downgrade_after_failed_probes=2)
TLS13 = PolicydSection(protocols=">=TLSv1.3")
V37 = (3, 7, 11)
V33 = (3, 3, 0)
V310 = (3, 10, 0)

ENFORCE = StsPolicy("abc123", "enforce", ("mx1.example.org", "*.example.org"), 86400, NOW - 10)
TESTING = replace(ENFORCE, mode="testing")
EXPIRED = replace(ENFORCE, fetched_at=NOW - 86400 - 1)
DANE_USABLE = DaneFacts(tlsa_present=True, validated=True, usable=True, checked_at=NOW)
DANE_UNUSABLE = DaneFacts(tlsa_present=True, validated=True, usable=False, checked_at=NOW)
DANE_UNSIGNED = DaneFacts(tlsa_present=True, validated=False, usable=True, checked_at=NOW)
BASE = DomainFacts("example.org", first_seen=NOW - 100)
SEEN = replace(BASE, tls_first_seen=NOW - 50, tls_last_seen=NOW - 50)

SECURE_LINE = "secure match=mx1.example.org:.example.org servername=hostname protocols=>=TLSv1.2"

CASES = [
    # (name, facts, config, version, rule, line)
    ("unknown domain", BASE, DEFAULT, V37, "none", None),
    ("override encrypt", replace(BASE, override="encrypt"), DEFAULT, V37, "override",
     "encrypt protocols=>=TLSv1.2"),
    ("override none beats dane", replace(BASE, override="none", dane=DANE_USABLE), DEFAULT, V37,
     "override", "none"),
    ("override may", replace(BASE, override="may"), DEFAULT, V37, "override", "may"),
    ("dane usable", replace(BASE, dane=DANE_USABLE), DEFAULT, V37, "dane",
     "dane-only protocols=>=TLSv1.2"),
    ("dane unusable only", replace(BASE, dane=DANE_UNUSABLE), DEFAULT, V37, "dane",
     "encrypt protocols=>=TLSv1.2"),
    ("dane beats sts", replace(BASE, dane=DANE_USABLE, sts=ENFORCE), DEFAULT, V37, "dane",
     "dane-only protocols=>=TLSv1.2"),
    ("dane without AD ignored", replace(BASE, dane=DANE_UNSIGNED), DEFAULT, V37, "none", None),
    ("sts enforce", replace(BASE, sts=ENFORCE), DEFAULT, V37, "mta-sts", SECURE_LINE),
    ("sts enforce old postfix", replace(BASE, sts=ENFORCE), DEFAULT, V33, "mta-sts",
     "secure match=mx1.example.org:.example.org protocols=>=TLSv1.2"),
    ("sts enforce tlsrpt postfix", replace(BASE, sts=ENFORCE), DEFAULT, V310, "mta-sts",
     SECURE_LINE + " policy_type=sts policy_domain=example.org"
     " mx_host_pattern=mx1.example.org mx_host_pattern=*.example.org"
     " { policy_string = version: STSv1 } { policy_string = mode: enforce }"
     " { policy_string = mx: mx1.example.org } { policy_string = mx: *.example.org }"
     " { policy_string = max_age: 86400 }"),
    ("sts testing", replace(BASE, sts=TESTING), DEFAULT, V37, "none", None),
    ("sts expired", replace(BASE, sts=EXPIRED), DEFAULT, V37, "none", None),
    ("sts beats monitoring", replace(SEEN, sts=ENFORCE), DEFAULT, V37, "mta-sts", SECURE_LINE),
    ("sts testing with tls seen", replace(SEEN, sts=TESTING), DEFAULT, V37, "monitoring",
     "encrypt protocols=>=TLSv1.2"),
    ("tls seen", SEEN, DEFAULT, V37, "monitoring", "encrypt protocols=>=TLSv1.2"),
    ("tls seen never downgraded", replace(SEEN, failed_probes=50), DEFAULT, V37, "monitoring",
     "encrypt protocols=>=TLSv1.2"),
    ("tls seen below downgrade limit", replace(SEEN, failed_probes=1), DOWNGRADE_2, V37,
     "monitoring", "encrypt protocols=>=TLSv1.2"),
    ("tls seen downgraded", replace(SEEN, failed_probes=2), DOWNGRADE_2, V37, "none", None),
    ("protocols configurable", SEEN, TLS13, V37, "monitoring", "encrypt protocols=>=TLSv1.3"),
]


@pytest.mark.parametrize(
    ("facts", "config", "version", "rule", "line"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_requirement_table(facts, config, version, rule, line) -> None:
    requirement = tls_requirement(facts, config, now=NOW)
    assert requirement.rule == rule
    assert requirement.policy_line(version) == line
    level = line.split()[0] if line is not None else None
    assert requirement.requires_tls == (level not in (None, "none", "may"))
    assert "example.org" in requirement.reason


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("mx.example.org", "mx.example.org", True),
        ("MX.Example.org.", "mx.example.org", True),
        ("mx.example.org", "*.example.org", True),
        ("example.org", "*.example.org", False),
        ("a.b.example.org", "*.example.org", False),
        ("mx.example.net", "*.example.org", False),
        ("mx.example.org", "mx2.example.org", False),
    ],
)
def test_mx_pattern_one_label(host: str, pattern: str, matches: bool) -> None:
    assert mx_matches_pattern(host, pattern) is matches


def test_record_requirement_new_domain_without_tls() -> None:
    stored, event, previous = record_requirement(None, BASE, DEFAULT, now=NOW)
    assert event is None
    assert previous is None
    assert stored.recorded_level is None
    assert stored.recorded_rule == "none"


def test_record_requirement_first_policy() -> None:
    stored, event, _ = record_requirement(None, replace(BASE, sts=ENFORCE), DEFAULT, now=NOW)
    assert event is not None
    assert (event.old_level, event.new_level, event.rule) == (None, "secure", "mta-sts")
    assert stored.recorded_level == "secure"


def test_record_requirement_unchanged_level() -> None:
    old, _, _ = record_requirement(None, replace(BASE, sts=ENFORCE), DEFAULT, now=NOW)
    stored, event, previous = record_requirement(old, replace(old, sts_checked_at=NOW), DEFAULT,
                                                 now=NOW + 60)
    assert event is None
    assert previous == "mta-sts"
    assert stored.recorded_level == "secure"


def test_record_requirement_expiry_is_event() -> None:
    old, _, _ = record_requirement(None, replace(BASE, sts=ENFORCE), DEFAULT, now=NOW)
    later = ENFORCE.expires_at + 1
    stored, event, previous = record_requirement(old, old, DEFAULT, now=later)
    assert event is not None
    assert (event.old_level, event.new_level) == ("secure", None)
    assert previous == "mta-sts"
    assert audit_source(event.rule, previous) == "expiry"
    assert stored.recorded_level is None


def test_audit_source_names() -> None:
    assert audit_source("override", None) == "admin"
    assert audit_source("dane", None) == "dane"
    assert audit_source("mta-sts", "monitoring") == "mta-sts"
    assert audit_source("monitoring", None) == "probe"
    assert audit_source("none", "monitoring") == "probe"
    assert audit_source("none", "override") == "admin"


HELD = NOW + 3600
HOLD_CASES = [
    # (name, facts, rule, line): the policy Postfix gets while a TLS hold lasts or after it.
    ("hold on a domain without TLS", replace(BASE, tls_held_until=HELD), "held",
     "encrypt protocols=>=TLSv1.2"),
    ("hold beats an override to none", replace(BASE, override="none", tls_held_until=HELD), "held",
     "encrypt protocols=>=TLSv1.2"),
    ("hold beats an override to may", replace(BASE, override="may", tls_held_until=HELD), "held",
     "encrypt protocols=>=TLSv1.2"),
    ("hold beats an expired policy", replace(BASE, sts=EXPIRED, tls_held_until=HELD), "held",
     "encrypt protocols=>=TLSv1.2"),
    ("hold beats a downgrade", replace(SEEN, failed_probes=2, tls_held_until=HELD), "held",
     "encrypt protocols=>=TLSv1.2"),
    ("stronger rule stays", replace(BASE, sts=ENFORCE, tls_held_until=HELD), "mta-sts", SECURE_LINE),
    ("override verify stays", replace(BASE, override="verify", tls_held_until=HELD), "override",
     "verify servername=hostname protocols=>=TLSv1.2"),
    ("hold ended", replace(BASE, override="may", tls_held_until=NOW), "override", "may"),
    ("no hold", replace(BASE, override="may"), "override", "may"),
]


@pytest.mark.parametrize(("name", "facts", "rule", "line"), HOLD_CASES, ids=[case[0] for case in HOLD_CASES])
def test_enforced_requirement_table(name: str, facts: DomainFacts, rule: str, line: str | None) -> None:
    config = DOWNGRADE_2 if facts.failed_probes else DEFAULT
    requirement = enforced_requirement(facts, config, now=NOW)

    assert (requirement.rule, requirement.policy_line(V37)) == (rule, line)


def test_hold_is_invisible_to_routing() -> None:
    # The milter routes by tls_requirement: a hold alone must not make new mail count as
    # protected by TLS, or sensitive mail would keep going to a domain without TLS.
    facts = replace(BASE, override="may", tls_held_until=HELD)

    assert not tls_requirement(facts, DEFAULT, now=NOW).requires_tls
    assert enforced_requirement(facts, DEFAULT, now=NOW).requires_tls


def test_hold_is_not_stored_in_the_facts_json() -> None:
    facts = replace(SEEN, tls_held_until=HELD)

    assert "tls_held_until" not in facts.to_json()
    assert DomainFacts.from_json(facts.to_json()) == SEEN
