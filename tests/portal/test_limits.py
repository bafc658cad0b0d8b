"""Limits per client address: finding the client, its key, and the counting table."""

from __future__ import annotations

import ipaddress

import pytest

from postveil.portal.limits import (
    UNKNOWN_CLIENT,
    WINDOW,
    ClientLimiter,
    client_address,
    client_key,
)

PROXIES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # No trusted proxy: the header is ignored.
        ("198.51.100.7", ["203.0.113.9"], (), "198.51.100.7"),
        ("127.0.0.1", ["203.0.113.9"], (), "127.0.0.1"),
        # An untrusted peer cannot choose its address with the header.
        ("198.51.100.7", ["203.0.113.9"], PROXIES, "198.51.100.7"),
        # Trusted peer: the right-most address that is not a trusted proxy.
        ("127.0.0.1", ["203.0.113.9"], PROXIES, "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], PROXIES, "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9, 10.1.2.3"], PROXIES, "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9, 10.1.2.3"], PROXIES, "203.0.113.9"),
        # Ports and brackets as some proxies write them.
        ("127.0.0.1", ["203.0.113.9:5123"], PROXIES, "203.0.113.9"),
        ("127.0.0.1", ["[2001:db8::5]:443"], PROXIES, "2001:db8::5"),
        ("127.0.0.1", ["2001:db8::5"], PROXIES, "2001:db8::5"),
        # A malformed entry written by a trusted hop: the last trusted address.
        ("127.0.0.1", ["203.0.113.9, unknown"], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.9, unknown, 10.1.2.3"], PROXIES, "10.1.2.3"),
        # Every entry trusted, or no header: the left-most trusted address.
        ("127.0.0.1", ["10.9.9.9, 10.1.2.3"], PROXIES, "10.9.9.9"),
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # A dual-stack listener's IPv4-mapped peer counts as IPv4.
        ("::ffff:198.51.100.7", [], (), "198.51.100.7"),
        ("::ffff:127.0.0.1", ["203.0.113.9"], PROXIES, "203.0.113.9"),
        # A zone id is header text: dropped.
        ("127.0.0.1", ["fe80::1%eth0\nforged"], PROXIES, "fe80::1"),
        ("127.0.0.1", ["[fe80::1%25x]:80"], PROXIES, "fe80::1"),
    ],
)
def test_client_address_table(
    peer: str,
    forwarded: list[str],
    trusted: tuple[ipaddress.IPv4Network, ...],
    expected: str,
) -> None:
    found = client_address(peer, forwarded, trusted)

    assert found == ipaddress.ip_address(expected)
    assert str(found) == expected


@pytest.mark.parametrize("peer", [None, "", "not-an-address"])
def test_client_address_without_ip_peer(peer: str | None) -> None:
    assert client_address(peer, ["203.0.113.9"], PROXIES) is None
    assert client_key(None) == UNKNOWN_CLIENT


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:eeee:dddd:cccc", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_client_key_groups_ipv6_per_64(address: str, key: str) -> None:
    assert client_key(ipaddress.ip_address(address)) == key


def limiter(codes: int = 3, wrong: int = 3, max_clients: int = 100) -> ClientLimiter:
    return ClientLimiter(codes_per_hour=codes, wrong_codes_per_hour=wrong, max_clients=max_clients)


def test_code_requests_limited_per_hour() -> None:
    limits = limiter(codes=3)
    for second in range(3):
        assert limits.request_code("198.51.100.7", 1000.0 + second) is None
    rejection = limits.request_code("198.51.100.7", 1010.0)
    assert rejection is not None
    assert rejection.first
    assert rejection.retry_after == pytest.approx(1000.0 + WINDOW - 1010.0)
    again = limits.request_code("198.51.100.7", 1020.0)
    assert again is not None
    assert not again.first
    # Other clients have counts of their own.
    assert limits.request_code("198.51.100.8", 1020.0) is None
    # The oldest request leaves the window after an hour.
    assert limits.request_code("198.51.100.7", 1000.0 + WINDOW) is None
    rejected_again = limits.request_code("198.51.100.7", 1000.0 + WINDOW + 0.5)
    assert rejected_again is not None
    assert rejected_again.first


def test_only_wrong_entries_count() -> None:
    limits = limiter(wrong=2)
    for second in range(10):
        started = 1000.0 + second
        assert limits.begin_entry("198.51.100.7", started) is None
        limits.end_entry("198.51.100.7", started, wrong=False)
    for second in range(2):
        started = 2000.0 + second
        assert limits.begin_entry("198.51.100.7", started) is None
        limits.end_entry("198.51.100.7", started, wrong=True)
    rejection = limits.begin_entry("198.51.100.7", 2010.0)
    assert rejection is not None
    assert rejection.first


def test_concurrent_entries_counted_before_check() -> None:
    limits = limiter(wrong=2)
    # Two entries in flight use up the limit before either is checked.
    assert limits.begin_entry("198.51.100.7", 1000.0) is None
    assert limits.begin_entry("198.51.100.7", 1000.5) is None
    assert limits.begin_entry("198.51.100.7", 1001.0) is not None
    # One of them was right: its place is free again.
    limits.end_entry("198.51.100.7", 1000.5, wrong=False)
    assert limits.begin_entry("198.51.100.7", 1002.0) is None


def test_table_never_exceeds_cap() -> None:
    limits = limiter(codes=1, max_clients=100)
    for number in range(250):
        limits.request_code(f"client-{number}", 1000.0 + number / 1000)
        assert len(limits) <= 100
    assert len(limits) == 100
    assert limits.dropped == 150


def test_cap_drops_least_recently_seen_client() -> None:
    limits = limiter(codes=1, max_clients=100)
    assert limits.request_code("198.51.100.1", 1000.0) is None
    assert limits.request_code("198.51.100.2", 1000.0) is None
    for number in range(98):
        limits.request_code(f"203.0.113.{number}", 1001.0)
    # Seen again, so 198.51.100.2 is now the least recently seen.
    assert limits.request_code("198.51.100.1", 1002.0) is not None
    assert limits.request_code("192.0.2.1", 1003.0) is None
    assert limits.dropped == 1
    # The dropped client starts from zero; the other keeps its count.
    assert limits.request_code("198.51.100.2", 1004.0) is None
    assert limits.request_code("198.51.100.1", 1005.0) is not None


def test_idle_clients_go_before_the_cap() -> None:
    limits = limiter(codes=1, max_clients=100)
    for number in range(100):
        limits.request_code(f"203.0.113.{number}", 1000.0)
    # An hour later every count is idle, so a new client drops nothing it needs.
    assert limits.request_code("198.51.100.1", 1000.0 + WINDOW + 1) is None
    assert len(limits) == 1
    assert limits.dropped == 0


def test_limits_below_one_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limiter(codes=0)
