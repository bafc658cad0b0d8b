"""Connections to the policy socket that never finish a request are closed."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from postveil.policyd import delegation
from postveil.policyd.delegation import PolicyDelegationServer


async def test_request_sent_line_by_line_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delegation, "IDLE_TIMEOUT", 0.3)
    # No request is completed, so the server never calls for its domain service.
    server = PolicyDelegationServer(lambda: None)  # type: ignore[arg-type, return-value]
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        # Each line comes well within the timeout, but the request never ends.
        with contextlib.suppress(ConnectionError):
            for number in range(50):
                writer.write(f"attribute{number}=value\n".encode())
                await writer.drain()
                await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    started = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(100), 3) == b""
        assert time.monotonic() - started < 1.5
    finally:
        sender.cancel()
        writer.close()
        listener.close()
        await listener.wait_closed()
