"""The built-in portal's configuration keys."""

from __future__ import annotations

import ipaddress

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
        ({"client_codes_per_hour": 0}, "greater than or equal to 1"),
        ({"client_wrong_codes_per_hour": -1}, "greater than or equal to 1"),
        ({"max_tracked_clients": 10}, "greater than or equal to 100"),
        ({"read_memory_budget": "100MB"}, "read_memory_budget 100000000 is too small"),
        ({"read_memory_budget": 0}, "invalid size 0: must be greater than 0"),
        ({"max_tracked_clients": 10**7}, "less than or equal to 1000000"),
        ({"trusted_proxies": "127.0.0.1"}, r"expected a list, for example \[127.0.0.1\]"),
        ({"trusted_proxies": ["proxy.example.org"]}, "invalid trusted_proxies entry"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "has host bits set"),
        # Clients of a dual-stack listener are read as IPv4, so these never match.
        ({"trusted_proxies": ["::ffff:10.0.0.1"]}, r"IPv4-mapped.*write 10\.0\.0\.1/32"),
        ({"trusted_proxies": ["::ffff:10.0.0.0/104"]}, r"IPv4-mapped.*write 10\.0\.0\.0/8"),
        ({"notify_sender": "always"}, "'never' or 'first_open'"),
        ({"write_timeout": "10ms"}, "0.01 s is too short .* set at least 1s"),
    ],
)
def test_invalid_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PortalSection.model_validate(values)


def test_client_limit_defaults() -> None:
    section = PortalSection()
    assert section.client_codes_per_hour == 20
    assert section.client_wrong_codes_per_hour == 20
    assert section.max_tracked_clients == 10_000
    assert section.trusted_proxies == ("127.0.0.0/8", "::1/128")
    assert section.notify_sender == "never"


def test_trusted_proxies_parsed() -> None:
    section = PortalSection.model_validate({"trusted_proxies": ["127.0.0.1", "::1", "10.0.0.0/8"]})
    assert section.trusted_proxies == ("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    assert ipaddress.ip_address("10.2.3.4") in section.trusted_networks[2]


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


def test_read_budget_follows_max_message_size() -> None:
    assert PortalSection().read_budget == 2 * (162_500_000 + 16 * 1024 * 1024)
    assert PortalSection(max_message_size="10MB").read_budget == 2 * (32_500_000 + 16 * 1024 * 1024)
    assert PortalSection(read_memory_budget="1GB").read_budget == 1_000_000_000
