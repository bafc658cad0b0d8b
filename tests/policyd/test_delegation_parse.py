"""Policy delegation: request parsing and the verdict table."""

from __future__ import annotations

import pytest

from postveil.config.policyd import PolicydSection
from postveil.policyd.delegation import (
    PolicyRequestError,
    delegation_verdict,
    parse_request,
    recipient_domain,
)
from postveil.tlsfacts.requirement import Requirement

CONFIG = PolicydSection(tls_exclusive_senders=["news@example.com", "@bulk.example.com"])


def _request(**overrides: str) -> dict[str, str]:
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "sender": "news@example.com",
        "recipient": "patient@example.org",
    }
    attributes.update(overrides)
    return attributes


def test_parse_request_lines() -> None:
    attributes = parse_request([b"request=smtpd_access_policy", b"sender=", b"recipient=a@b.org",
                                b"sender=second@x.org", b"ccert_subject=a=b"])
    assert attributes["request"] == "smtpd_access_policy"
    assert attributes["sender"] == ""
    assert attributes["recipient"] == "a@b.org"
    assert attributes["ccert_subject"] == "a=b"


@pytest.mark.parametrize(
    "line", [b"no equals sign", b"=value", b"bad name=value", b"x" * 9000 + b"=1", b"name=\xff"]
)
def test_parse_request_rejects_malformed(line: bytes) -> None:
    with pytest.raises(PolicyRequestError):
        parse_request([b"request=smtpd_access_policy", line])


def test_parse_request_attribute_limit() -> None:
    with pytest.raises(PolicyRequestError):
        parse_request([b"a%d=1" % i for i in range(101)])


@pytest.mark.parametrize(
    ("recipient", "domain"),
    [("a@Example.ORG", "example.org"), ("postmaster", None), ("a@[192.0.2.1]", None), ("", None)],
)
def test_recipient_domain(recipient: str, domain: str | None) -> None:
    assert recipient_domain({"recipient": recipient}) == domain


TLS = Requirement("example.org", "encrypt", "monitoring", "example.org offered STARTTLS")
NO_TLS = Requirement("example.org", None, "none", "no TLS requirement is known for example.org")
MAY = Requirement("example.org", "may", "override", "the administrator set may")

VERDICTS = [
    ("exclusive sender to tls domain", _request(), TLS, "DUNNO"),
    ("exclusive sender to plain domain", _request(), NO_TLS, "550 5.7.10"),
    ("exclusive sender to may override", _request(), MAY, "550 5.7.10"),
    ("sender domain pattern", _request(sender="x@bulk.example.com"), NO_TLS, "550 5.7.10"),
    ("sender case ignored", _request(sender="News@Example.COM"), NO_TLS, "550 5.7.10"),
    ("ordinary sender", _request(sender="doctor@example.com"), NO_TLS, "DUNNO"),
    ("null sender", _request(sender=""), NO_TLS, "DUNNO"),
    ("not at rcpt", _request(protocol_state="DATA"), NO_TLS, "DUNNO"),
    ("other request type", _request(request="junk"), NO_TLS, "DUNNO"),
    ("exclusive sender to address literal", _request(recipient="a@[192.0.2.1]"), None, "550 5.7.10"),
    ("exclusive sender to local user", _request(recipient="postmaster"), None, "DUNNO"),
    ("ordinary sender to address literal", _request(sender="doctor@example.com", recipient="a@[192.0.2.1]"),
     None, "DUNNO"),
]


@pytest.mark.parametrize(("attributes", "requirement", "prefix"), [v[1:] for v in VERDICTS],
                         ids=[v[0] for v in VERDICTS])
def test_verdict_table(attributes: dict, requirement: Requirement | None, prefix: str) -> None:
    verdict = delegation_verdict(attributes, requirement, CONFIG)
    assert verdict.action.startswith(prefix)
    if prefix.startswith("550") and requirement is not None:
        assert "example.org" in verdict.action
