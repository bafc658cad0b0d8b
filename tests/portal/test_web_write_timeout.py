"""``portal.write_timeout``: a real client socket on loopback that sends its request
and then stops reading loses its connection, and its read gives back the budget."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest

from postveil.portal.budget import read_cost
from postveil.portal.web import SESSION_COOKIE, Portal
from tests.portal.conftest import RECIPIENT, SENDER, RunningPortal, StartPortal
from tests.portal.test_web_flow import sign_in
from tests.portal.test_web_read_budget import large_message

WRITE_TIMEOUT = 1.0
"""``portal.write_timeout`` in these tests, in seconds."""

RECEIVE_BUFFER = 4096
"""SO_RCVBUF of the stalled client, so the kernel takes little of the response for it."""

SEND_BUFFER = 65536
"""SO_SNDBUF of the portal's connections in these tests. On loopback Linux grows the
send buffer up to net.ipv4.tcp_wmem (4 MiB by default), which takes any page whole,
so without this a page response never waits for the client. Over a network link the
buffer is often smaller than a page, as here."""


def page_message() -> bytes:
    """A message whose page is about 800 KB: its text of 200,000 characters is all
    '<', which the page writes as '&lt;'."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "Lab values"
    message.set_content(("<" * 99 + "\n") * 2000)
    return message.as_bytes()


def handlers(portal: RunningPortal) -> Portal:
    assert portal.portal is not None
    return portal.portal


async def session_of(portal: RunningPortal, token: str) -> str:
    """Sign in with a code from the sink and return the session token."""
    async with portal.client() as client:
        await sign_in(client, portal, token)
        cookies = {cookie.key: cookie.value for cookie in client.cookie_jar}
    return cookies[SESSION_COOKIE]


def stalled_request(portal: RunningPortal, path: str, session: str) -> socket.socket:
    """Connect with a small receive buffer, send a GET request and read nothing."""
    address = urlsplit(portal.base_url)
    assert address.hostname is not None and address.port is not None
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    client.connect((address.hostname, address.port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Cookie: {SESSION_COOKIE}={session}\r\n\r\n"
    )
    client.sendall(request.encode("ascii"))
    return client


def read_until_closed(client: socket.socket) -> tuple[int, str]:
    """Read what the portal sent before it dropped the connection; return the byte
    count and how the connection ended."""
    client.settimeout(10)
    received = 0
    try:
        while chunk := client.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        return received, "reset"
    return received, "closed"


async def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Wait until ``condition()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "raw", "logged"),
    [
        ("/message", page_message(), "the response timed out"),
        ("/download", large_message(), f"the download by {RECIPIENT} ended after"),
    ],
    ids=["page", "download"],
)
async def test_stalled_client_loses_connection(
    start_portal: StartPortal,
    caplog: pytest.LogCaptureFixture,
    path: str,
    raw: bytes,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="postveil.portal")
    portal = await start_portal(write_timeout=f"{WRITE_TIMEOUT:g}s", send_buffer=SEND_BUFFER)
    app = handlers(portal)
    message_id, token = portal.deposit(raw)
    session = await session_of(portal, token)

    client = stalled_request(portal, f"/m/{token}{path}", session)
    try:
        await wait_for(lambda: app.read_budget.reserved == read_cost(len(raw)), 30)
        held = await wait_for(lambda: app.read_budget.reserved == 0, 10 * WRITE_TIMEOUT)
        received, ended = await asyncio.to_thread(read_until_closed, client)
    finally:
        client.close()

    assert held >= WRITE_TIMEOUT * 0.9
    assert ended == "reset"
    assert received < len(raw)
    warning = f"client 127.0.0.1: message {message_id}: {logged}"
    assert warning in caplog.text
    assert "the client did not take" in caplog.text
    assert "(portal.write_timeout); closing the connection" in caplog.text
    assert token not in caplog.text
    assert session not in caplog.text
    # No parse of this link is waiting or running once the response is dropped.
    assert app._parse_turns == {}
    assert app.parser._children == set()


async def test_late_reader_within_timeout_gets_page(start_portal: StartPortal) -> None:
    """A client that starts reading before the timeout and takes the whole page
    within it keeps its connection and gets the page."""
    portal = await start_portal(write_timeout=f"{WRITE_TIMEOUT:g}s", send_buffer=SEND_BUFFER)
    raw = page_message()
    _, token = portal.deposit(raw)
    session = await session_of(portal, token)

    client = stalled_request(portal, f"/m/{token}/message", session)
    try:
        await asyncio.sleep(WRITE_TIMEOUT / 2)
        client.settimeout(10)
        received = b""
        while b"</html>" not in received:
            chunk = await asyncio.to_thread(client.recv, 65536)
            assert chunk, "connection closed before the page arrived"
            received += chunk
    finally:
        client.close()

    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"&lt;" * 99 in received
    await wait_for(lambda: handlers(portal).read_budget.reserved == 0, 5)


def read_slowly(client: socket.socket, size: int, pause: float) -> tuple[int, str]:
    """Read ``size`` bytes, then wait ``pause`` seconds, until the connection ends;
    return the byte count and how the connection ended."""
    client.settimeout(10)
    received = 0
    try:
        while chunk := client.recv(size):
            received += len(chunk)
            time.sleep(pause)
    except ConnectionResetError:
        return received, "reset"
    return received, "closed"


async def test_slow_reader_loses_download(
    start_portal: StartPortal, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that reads all along, but far less than a chunk per write_timeout,
    loses its connection too, and the log does not claim that it took nothing."""
    caplog.set_level(logging.INFO, logger="postveil.portal")
    portal = await start_portal(write_timeout=f"{WRITE_TIMEOUT:g}s", send_buffer=SEND_BUFFER)
    raw = large_message()
    message_id, token = portal.deposit(raw)
    session = await session_of(portal, token)

    client = stalled_request(portal, f"/m/{token}/download", session)
    try:
        # About 40 KB/s, where one 256 KB chunk per second would need more than 256 KB/s.
        received, ended = await asyncio.to_thread(read_slowly, client, 4096, 0.1)
    finally:
        client.close()

    assert ended == "reset"
    assert 0 < received < len(raw)
    assert (
        f"client 127.0.0.1: message {message_id}: the download by {RECIPIENT} ended after"
        in caplog.text
    )
    assert "did not take the next chunk of at most 256 KB within 1s" in caplog.text
    await wait_for(lambda: handlers(portal).read_budget.reserved == 0, 5)
