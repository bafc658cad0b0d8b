"""The time limit on parsing a message for its page or for one attachment."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from postveil.portal.web import UNREADABLE_NOTICE
from tests.portal.conftest import StartPortal, sample_message
from tests.portal.test_web_flow import sign_in

# About 7 MB of HTML: parsing it for the page takes seconds, far over the limit below,
# while a small message is parsed well within it.
SLOW_HTML = "<p>" + "<b>x</b> " * 800_000 + "</p>"
TIME_LIMIT = "1500ms"


async def test_slow_message_is_offered_as_download(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postveil.portal")
    portal = await start_portal(view_time_limit=TIME_LIMIT)
    slow_message = sample_message(html=SLOW_HTML)
    _, slow = portal.deposit(slow_message)
    _, quick = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, slow)
        async with client.get(portal.url(slow, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert UNREADABLE_NOTICE.split(".")[0] in page
        async with client.get(portal.url(slow, "/download")) as response:
            assert response.status == 200
            assert await response.read() == slow_message

    # The next message is shown as usual.
    async with portal.client() as client:
        await sign_in(client, portal, quick)
        async with client.get(portal.url(quick, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert UNREADABLE_NOTICE.split(".")[0] not in page
    assert "parsing took longer than 1.5s" in caplog.text


async def test_attachment_over_time_limit_is_503(start_portal: StartPortal) -> None:
    # No parsing process starts within a millisecond, so every parse runs out of time.
    portal = await start_portal(view_time_limit="1ms")
    _, token = portal.deposit()

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/part/1")) as response:
            page = await response.text()
        assert response.status == 503
        assert "Download the whole message" in page
    assert "downloaded" not in portal.audit_text()


async def test_parses_take_turns_per_link(start_portal: StartPortal) -> None:
    # Parses run one at a time for all recipients. Without turns per link, one
    # recipient's concurrent requests for a slow message queued a time limit each
    # ahead of everyone else's page.
    portal = await start_portal(view_time_limit=TIME_LIMIT)
    _, slow = portal.deposit(sample_message(html=SLOW_HTML))
    _, quick = portal.deposit()

    async with portal.client() as flooder, portal.client() as reader:
        await sign_in(flooder, portal, slow)
        await sign_in(reader, portal, quick)

        async def fetch() -> int:
            async with flooder.get(portal.url(slow, "/message")) as response:
                await response.read()
                return response.status

        flood = [asyncio.create_task(fetch()) for _ in range(4)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with reader.get(portal.url(quick, "/message")) as response:
            page = await response.text()
        waited = time.monotonic() - started
        statuses = await asyncio.gather(*flood)

    assert response.status == 200
    assert UNREADABLE_NOTICE.split(".")[0] not in page
    # At most one parse of the slow message runs ahead of the reader's.
    assert waited < 3.0
    assert statuses == [200] * 4
