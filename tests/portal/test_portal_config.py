"""The built-in portal's configuration keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from postveil.config.portal import PortalSection


def test_defaults_listen_on_loopback() -> None:
    section = PortalSection()
    assert section.listen_address == ("127.0.0.1", 8480)
    assert section.relay_address == ("127.0.0.1", 10026)
    assert section.base_url is None
    assert section.seal_key_file is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"base_url": "http://portal.example.org"}, "must use https"),
        ({"base_url": "ftp://portal.example.org"}, "invalid base_url"),
        ({"base_url": "https://portal.example.org/?a=1"}, "invalid base_url"),
        ({"listen": "0.0.0.0:8480"}, "not a loopback address"),
        ({"listen": "127.0.0.1"}, "expected 'host:port'"),
        ({"tls_certificate": "/etc/ssl/portal.pem"}, "both tls_certificate and tls_key"),
        ({"notify_from": "nobody"}, "invalid notify_from"),
        ({"notify_relay": "smtp.example.org:25"}, "relay must be on this host"),
        ({"code_attempts": 0}, "greater than or equal to 1"),
        ({"retention": "30"}, "invalid duration"),
    ],
)
def test_invalid_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PortalSection.model_validate(values)


def test_public_listener_with_tls_and_https_base_url() -> None:
    section = PortalSection.model_validate(
        {
            "listen": "[::]:443",
            "tls_certificate": "/etc/ssl/portal.pem",
            "tls_key": "/etc/ssl/portal.key",
            "base_url": "https://secure.example.org/",
        }
    )
    assert section.listen_address == ("::", 443)
    assert section.base_url == "https://secure.example.org"


def test_http_base_url_allowed_on_loopback_for_tests() -> None:
    assert PortalSection(base_url="http://127.0.0.1:8480").base_url == "http://127.0.0.1:8480"


def test_sender_address() -> None:
    assert (
        PortalSection(intake_address="intake@portal.example.org").sender_address
        == "no-reply@portal.example.org"
    )
    assert PortalSection(notify_from="portal@example.org").sender_address == "portal@example.org"
