"""Limits per client address, through the real portal: across links, behind proxies,
per IPv6 /64, and at the cap of the client table."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from postveil.portal.web import SESSION_COOKIE
from tests.portal.conftest import RunningPortal, StartPortal


async def post_code(
    client: aiohttp.ClientSession,
    portal: RunningPortal,
    token: str,
    forwarded_for: str | None = None,
) -> aiohttp.ClientResponse:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    async with client.post(
        portal.url(token, "/code"), headers=headers, allow_redirects=False
    ) as response:
        await response.read()
    return response


async def post_entry(
    client: aiohttp.ClientSession, portal: RunningPortal, token: str, code: str
) -> tuple[int, str]:
    async with client.post(
        portal.url(token, "/verify"), data={"code": code}, allow_redirects=False
    ) as response:
        return response.status, await response.text()


def wrong_code(code: str) -> str:
    return "00000000" if code != "00000000" else "11111111"


def rejection_reasons(portal: RunningPortal, event: str) -> list[str]:
    return [record["reason"] for record in portal.audit_records() if record["event"] == event]


async def test_code_requests_limited_across_links(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    portal = await start_portal(client_codes_per_hour=3)
    tokens = [portal.deposit()[1] for _ in range(4)]

    async with portal.client() as client:
        for token in tokens[:3]:
            assert (await post_code(client, portal, token)).status == 303
        async with client.post(portal.url(tokens[3], "/code"), allow_redirects=False) as response:
            page = await response.text()
        assert response.status == 429
        assert "requested from your network" in page
        assert 'name="code"' in page
        assert 0 < int(response.headers["Retry-After"]) <= 3600
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        # Later rejections in the same blocked period write no more records.
        assert (await post_code(client, portal, tokens[3])).status == 429

    assert len(portal.sink.messages) == 3
    assert portal.audit_events() == ["code_sent", "code_sent", "code_sent", "code_refused"]
    assert rejection_reasons(portal, "code_refused") == ["client_codes_per_hour 3 client 127.0.0.1"]
    assert "client 127.0.0.1: rejected code requests: client_codes_per_hour (3)" in caplog.text
    for token in portal.tokens:
        assert token not in caplog.text
        assert token not in portal.audit_text()


async def test_wrong_entries_limited_across_links(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    portal = await start_portal(client_wrong_codes_per_hour=3)
    _, token_a = portal.deposit()
    _, token_b = portal.deposit()

    async with portal.client() as client:
        assert (await post_code(client, portal, token_a)).status == 303
        code_a = portal.sink.last_code()
        assert (await post_code(client, portal, token_b)).status == 303
        code_b = portal.sink.last_code()

        for token, code in ((token_a, code_a), (token_a, code_a), (token_b, code_b)):
            status, page = await post_entry(client, portal, token, wrong_code(code))
            assert status == 200
            assert "not correct" in page

        # Even the right code is rejected while the client is over its limit.
        async with client.post(
            portal.url(token_b, "/verify"), data={"code": code_b}, allow_redirects=False
        ) as response:
            page = await response.text()
        assert response.status == 429
        assert "Too many wrong codes" in page
        assert SESSION_COOKIE not in response.cookies
        assert 0 < int(response.headers["Retry-After"]) <= 3600
        assert response.headers["Cache-Control"] == "no-store"
        status, _ = await post_entry(client, portal, token_a, code_a)
        assert status == 429

    assert portal.audit_events().count("code_wrong") == 3
    assert "verified" not in portal.audit_events()
    assert rejection_reasons(portal, "code_entry_refused") == [
        "client_wrong_codes_per_hour 3 client 127.0.0.1"
    ]
    assert "client 127.0.0.1: rejected code entries" in caplog.text
    for token in portal.tokens:
        assert token not in caplog.text
    assert code_a not in caplog.text
    assert code_b not in caplog.text


async def test_right_codes_do_not_count(start_portal: StartPortal) -> None:
    portal = await start_portal(client_wrong_codes_per_hour=1)
    tokens = [portal.deposit()[1] for _ in range(3)]

    async with portal.client() as client:
        for token in tokens:
            assert (await post_code(client, portal, token)).status == 303
            status, _ = await post_entry(client, portal, token, portal.sink.last_code())
            assert status == 303


async def test_concurrent_wrong_entries_stop_at_limit(start_portal: StartPortal) -> None:
    portal = await start_portal(client_wrong_codes_per_hour=2, code_attempts=10)
    _, token = portal.deposit()

    async with portal.client() as client:
        assert (await post_code(client, portal, token)).status == 303
        wrong = wrong_code(portal.sink.last_code())
        results = await asyncio.gather(
            *(post_entry(client, portal, token, wrong) for _ in range(6))
        )

    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert portal.audit_events().count("code_wrong") == 2


async def test_forwarded_for_ignored_without_trusted_proxy(start_portal: StartPortal) -> None:
    portal = await start_portal(client_codes_per_hour=2, trusted_proxies=[])
    tokens = [portal.deposit()[1] for _ in range(3)]

    async with portal.client() as client:
        statuses = [
            (await post_code(client, portal, token, f"198.51.100.{number}")).status
            for number, token in enumerate(tokens)
        ]

    assert statuses == [303, 303, 429]
    assert rejection_reasons(portal, "code_refused") == ["client_codes_per_hour 2 client 127.0.0.1"]


async def test_loopback_proxy_trusted_by_default(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    portal = await start_portal(client_codes_per_hour=1)
    tokens = [portal.deposit()[1] for _ in range(4)]

    async with portal.client() as client:
        first = await post_code(client, portal, tokens[0], "198.51.100.1")
        other_client = await post_code(client, portal, tokens[1], "198.51.100.2")
        assert "no X-Forwarded-For" not in caplog.text
        # Without the header, the proxy's own address is the client, with a warning
        # once an hour.
        no_header = await post_code(client, portal, tokens[2])
        no_header_again = await post_code(client, portal, tokens[3])

    assert first.status == 303
    assert other_client.status == 303
    assert no_header.status == 303
    assert no_header_again.status == 429
    assert caplog.text.count("has no X-Forwarded-For header") == 1
    # The access lines name the client that the proxy named.
    assert "198.51.100.2 via 127.0.0.1 POST /m/{token}/code 303" in caplog.text
    assert "\n127.0.0.1 POST /m/{token}/code 429" in "\n" + "\n".join(caplog.messages)
    assert rejection_reasons(portal, "code_refused") == ["client_codes_per_hour 1 client 127.0.0.1"]


async def test_forwarded_for_from_trusted_proxy(start_portal: StartPortal) -> None:
    portal = await start_portal(client_codes_per_hour=1, trusted_proxies=["127.0.0.1"])
    tokens = [portal.deposit()[1] for _ in range(4)]

    async with portal.client() as client:
        first = await post_code(client, portal, tokens[0], "198.51.100.1")
        other_client = await post_code(client, portal, tokens[1], "198.51.100.2")
        # A client that writes its own header gets the address the proxy appended.
        spoofed = await post_code(client, portal, tokens[2], "203.0.113.50, 198.51.100.1")
        spoofed_again = await post_code(client, portal, tokens[3], "203.0.113.51, 198.51.100.1")

    assert first.status == 303
    assert other_client.status == 303
    assert spoofed.status == 429
    assert spoofed_again.status == 429
    assert rejection_reasons(portal, "code_refused") == [
        "client_codes_per_hour 1 client 198.51.100.1"
    ]


async def test_ipv6_clients_counted_per_64(start_portal: StartPortal) -> None:
    portal = await start_portal(client_codes_per_hour=1, trusted_proxies=["127.0.0.1"])
    tokens = [portal.deposit()[1] for _ in range(3)]

    async with portal.client() as client:
        first = await post_code(client, portal, tokens[0], "2001:db8:1:2::1")
        same_64 = await post_code(client, portal, tokens[1], "2001:db8:1:2:ffff:ffff:ffff:ffff")
        other_64 = await post_code(client, portal, tokens[2], "2001:db8:1:3::1")

    assert first.status == 303
    assert same_64.status == 429
    assert other_64.status == 303
    assert rejection_reasons(portal, "code_refused") == [
        "client_codes_per_hour 1 client 2001:db8:1:2::/64"
    ]


async def test_full_table_drops_least_recently_seen(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    portal = await start_portal(
        client_codes_per_hour=1,
        codes_per_hour=1,
        max_tracked_clients=100,
        trusted_proxies=["127.0.0.1"],
    )
    _, token_a = portal.deposit()
    _, token_b = portal.deposit()

    async with portal.client() as client:
        assert (await post_code(client, portal, token_a, "198.51.100.1")).status == 303
        assert (await post_code(client, portal, token_b, "198.51.100.1")).status == 429
        # 100 other clients fill the table. Each passes its own limit and is then
        # stopped by the limit per recipient of link A, so no code is sent.
        for number in range(100):
            response = await post_code(client, portal, token_a, f"203.0.113.{number}")
            assert response.status == 429
        # 198.51.100.1 was dropped from the full table, so it starts from zero.
        assert (await post_code(client, portal, token_b, "198.51.100.1")).status == 303

    assert len(portal.sink.messages) == 2
    assert "the table of client limits is full (portal.max_tracked_clients 100)" in caplog.text
