"""The bound on decrypted bytes that the portal holds for page views and downloads
(``portal.read_memory_budget``), and the memory limit of the parsing process."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from email.message import EmailMessage

import aiohttp
import pytest

from postveil.portal.budget import ReadBudget, read_cost
from postveil.portal.web import UNREADABLE_NOTICE, Portal
from tests.portal.conftest import RECIPIENT, SENDER, RunningPortal, StartPortal
from tests.portal.test_web_flow import sign_in

MAX_SIZE = 30_000_000
ONE_READ = read_cost(MAX_SIZE)
WAIT = 0.5
"""Seconds a read waits for the budget in these tests, in place of READ_WAIT."""


def large_message(size: int = 24_000_000) -> bytes:
    """A message of about ``size`` bytes: more than the loopback connection's buffers
    take, so a download stays in progress while its client does not read."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "Scans"
    line = "Scan results for the whole department, one line of many.\n"
    message.set_content(line * (size // len(line)))
    return message.as_bytes()


def handlers(portal: RunningPortal) -> Portal:
    assert portal.portal is not None
    return portal.portal


async def wait_until_released(budget: ReadBudget, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while budget.reserved and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert budget.reserved == 0


async def start_stalled_download(client: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """Start a download and read only its headers, so the portal's write waits."""
    response = await client.get(url)
    assert response.status == 200
    return response


async def test_reads_beyond_budget_get_503(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postveil.portal")
    portal = await start_portal(max_message_size=MAX_SIZE, read_memory_budget=ONE_READ)
    budget = handlers(portal).read_budget
    budget.wait = WAIT
    raw = large_message()
    _, first = portal.deposit(raw)
    _, second = portal.deposit(raw)

    async with portal.client() as holder, portal.client() as other:
        await sign_in(holder, portal, first)
        await sign_in(other, portal, second)
        stalled = await start_stalled_download(holder, portal.url(first, "/download"))
        assert budget.reserved == read_cost(len(raw))

        started = time.monotonic()
        async with other.get(portal.url(second, "/download")) as response:
            page = await response.text()
        waited = time.monotonic() - started
        assert response.status == 503
        assert "try again in a minute" in page
        assert response.headers["Retry-After"] == "60"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert waited >= WAIT
        assert budget.reserved <= budget.capacity
        assert "no room in portal.read_memory_budget" in caplog.text

        assert await stalled.read() == raw
        stalled.release()
        await wait_until_released(budget)

        async with other.get(portal.url(second, "/download")) as response:
            assert response.status == 200
            assert await response.read() == raw
    await wait_until_released(budget)
    # The rejected read left no download record: one for each read that ran.
    assert portal.audit_events().count("downloaded") == 2


async def test_link_takes_one_read_at_a_time(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    # Room for two reads: the second request of one link waits for its link's turn,
    # while another link's read goes ahead.
    caplog.set_level(logging.WARNING, logger="postveil.portal")
    portal = await start_portal(max_message_size=MAX_SIZE, read_memory_budget=2 * ONE_READ)
    budget = handlers(portal).read_budget
    budget.wait = WAIT
    raw = large_message()
    _, busy = portal.deposit(raw)
    _, other_link = portal.deposit()

    async with portal.client() as flooder, portal.client() as reader:
        await sign_in(flooder, portal, busy)
        await sign_in(reader, portal, other_link)
        stalled = await start_stalled_download(flooder, portal.url(busy, "/download"))

        async with flooder.get(portal.url(busy, "/message")) as response:
            page = await response.text()
        assert response.status == 503
        assert "still being sent to you in another window or download" in page
        # The budget had room: the log must not send the admin to raise it.
        assert "of the same link was still being sent after 0.5s" in caplog.text
        assert "no room in portal.read_memory_budget" not in caplog.text
        async with reader.get(portal.url(other_link, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert UNREADABLE_NOTICE.split(".")[0] not in page

        stalled.close()
    await wait_until_released(budget)


async def test_disconnect_mid_download_releases_budget(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postveil.portal")
    portal = await start_portal(max_message_size=MAX_SIZE, read_memory_budget=ONE_READ)
    budget = handlers(portal).read_budget
    raw = large_message()
    message_id, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        response = await start_stalled_download(client, portal.url(token, "/download"))
        assert len(await response.content.read(100_000)) > 0
        assert budget.reserved > 0
        # Closing the response drops the connection before the body has arrived.
        response.close()
        await wait_until_released(budget)

    assert f"message {message_id}: download by {RECIPIENT} ended after" in caplog.text


async def test_failed_decryption_releases_budget(start_portal: StartPortal) -> None:
    portal = await start_portal()
    budget = handlers(portal).read_budget
    message_id, token = portal.deposit()
    stored = portal.store.directory / "messages" / message_id
    blob = bytearray(stored.read_bytes())
    blob[-1] ^= 1
    stored.write_bytes(bytes(blob))

    async with portal.client() as client:
        await sign_in(client, portal, token)
        for suffix in ("/message", "/download", "/part/1"):
            async with client.get(portal.url(token, suffix)) as response:
                assert response.status == 500
            assert budget.reserved == 0
            assert budget.reads_of(token) == 0


async def test_budget_bounds_memory_of_concurrent_downloads(start_portal: StartPortal) -> None:
    # Eight concurrent downloads of a 24 MB message: one runs, the others wait and get
    # 503, and the daemon's memory grows by about one read's worth, not eight.
    portal = await start_portal(max_message_size=MAX_SIZE, read_memory_budget=ONE_READ)
    budget = handlers(portal).read_budget
    budget.wait = WAIT
    raw = large_message()
    tokens = [portal.deposit(raw)[1] for _ in range(8)]
    sessions = [portal.client() for _ in tokens]
    try:
        for session, token in zip(sessions, tokens, strict=True):
            await sign_in(session, portal, token)
        # NOTE: the test client runs in this process too. Its reads hold one copy of
        # the message each, so only the responses' status codes are read here.
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        async def fetch(session: aiohttp.ClientSession, token: str) -> int:
            async with session.get(portal.url(token, "/download")) as response:
                if response.status == 200:
                    await asyncio.sleep(WAIT * 2)
                    while await response.content.read(1 << 20):
                        pass
                return response.status

        statuses = await asyncio.gather(
            *(fetch(session, token) for session, token in zip(sessions, tokens, strict=True))
        )
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        for session in sessions:
            await session.close()

    assert sorted(statuses) == [200] + [503] * 7
    await wait_until_released(budget)
    # The peak resident size only grows, so this holds however high earlier tests
    # pushed it. Eight reads would have needed eight times the message at least.
    assert peak_after - peak_before < 4 * len(raw)


async def test_parse_over_memory_limit_offers_eml(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postveil.portal")
    portal = await start_portal()
    parser = handlers(portal).parser
    raw = large_message(5_000_000)
    _, token = portal.deposit(raw)
    normal = parser.memory_allowance
    # One MiB of growth is far less than the parse of a 5 MB text needs.
    parser.memory_allowance = lambda size: 1 << 20

    async with portal.client() as client:
        await sign_in(client, portal, token)
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert UNREADABLE_NOTICE.split(".")[0] in page
        assert "MemoryError" in caplog.text

        async with client.get(portal.url(token, "/part/0")) as response:
            page = await response.text()
        assert response.status == 503
        assert "Download the whole message" in page

        async with client.get(portal.url(token, "/download")) as response:
            assert response.status == 200
            assert await response.read() == raw

        parser.memory_allowance = normal
        async with client.get(portal.url(token, "/message")) as response:
            page = await response.text()
        assert response.status == 200
        assert UNREADABLE_NOTICE.split(".")[0] not in page
        assert "The text is longer than this page shows" in page
    assert handlers(portal).read_budget.reserved == 0


async def test_message_over_budget_takes_it_all(start_portal: StartPortal) -> None:
    # Stored before max_message_size was lowered: the read costs more than the
    # default budget for the new size, so it takes the whole budget and runs alone.
    portal = await start_portal(max_message_size="1MB")
    budget = handlers(portal).read_budget
    raw = large_message()
    assert read_cost(len(raw)) > budget.capacity
    _, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        stalled = await start_stalled_download(client, portal.url(token, "/download"))
        assert budget.reserved == budget.capacity
        assert await stalled.read() == raw
        stalled.release()
    await wait_until_released(budget)


async def test_client_gone_before_download_starts(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    # The second download of the link waits for the first, and its client leaves
    # while it waits. Its turn then comes on a closed connection.
    caplog.set_level(logging.INFO, logger="postveil.portal")
    portal = await start_portal(max_message_size=MAX_SIZE, read_memory_budget=2 * ONE_READ)
    budget = handlers(portal).read_budget
    budget.wait = 10.0
    raw = large_message()
    message_id, token = portal.deposit(raw)

    async with portal.client() as client:
        await sign_in(client, portal, token)
        stalled = await start_stalled_download(client, portal.url(token, "/download"))
        second = asyncio.create_task(client.get(portal.url(token, "/download")))
        deadline = time.monotonic() + 5.0
        while budget.waiting == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert budget.waiting == 1
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.3)

        assert await stalled.read() == raw
        stalled.release()
        await wait_until_released(budget)
        await asyncio.sleep(0.3)

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    assert f"message {message_id}: download by {RECIPIENT} ended after 0 of" in caplog.text
