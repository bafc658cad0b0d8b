"""Socketmap server for Postfix ``smtp_tls_policy_maps`` (see Postfix socketmap_table(5)).

A request is the netstring ``<map name> <key>``; the reply is ``OK <policy>``,
``NOTFOUND `` or ``TEMP <reason>`` (Postfix defers the delivery). Requests on one
connection may be pipelined, and replies are sent in request order. Computed answers that require TLS are reused
for ``answer_cache_ttl`` seconds so cache hits cost one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from typing import cast

from postveil.errors import PostveilError, TemporaryFailure
from postveil.policyd.domains import DomainService
from postveil.policyd.netstring import NetstringDecoder, NetstringError, encode
from postveil.tlsfacts.names import domain_from_key
from postveil.tlsfacts.requirement import Requirement

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 100_000
"""Longest reply payload Postfix accepts, without the netstring framing (socketmap_table(5),
Postfix 3.7)."""
MAX_REQUEST_BYTES = 4096
"""Maximum request size in bytes: a map name plus a domain or ``[host]:port`` key."""

MAX_REUSED_ANSWERS = 100_000
"""Reused answers kept at once; the table is emptied when it reaches this size."""

IDLE_TIMEOUT = 300.0
"""Seconds a connection may go without a complete request before it is closed, so
clients that connect and send nothing, or trickle a request, cannot use up the
daemon's connections. Postfix closes its own idle socketmap connections sooner and
opens a new one for the next lookup."""

NOTFOUND = encode(b"NOTFOUND ")
_connection_ids = itertools.count(1)


def _temp(reason: str) -> bytes:
    return encode(b"TEMP " + reason.encode("ascii", errors="replace")[:200])


class SocketmapResponder:
    """Turns request payloads into reply netstrings; shared by all connections."""

    def __init__(self, service: DomainService, postfix_version: tuple[int, ...]) -> None:
        self.service = service
        self.postfix_version = postfix_version
        self.ttl = service.config.answer_cache_ttl
        self._answers: dict[bytes, tuple[float, bytes]] = {}

    def cached_reply(self, payload: bytes) -> bytes | None:
        entry = self._answers.get(payload)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    async def reply(self, payload: bytes, connection: str) -> bytes:
        """Compute the reply for one request; never raises except CancelledError."""
        name, space, key = payload.partition(b" ")
        if not space or not name:
            log.warning("%s: malformed socketmap request of %d bytes", connection, len(payload))
            return encode(b"PERM malformed request")
        domain = domain_from_key(key.decode("utf-8", errors="replace"))
        if domain is None:
            return NOTFOUND
        try:
            requirement = await self.service.requirement(domain)
        except TemporaryFailure as exc:
            log.warning("%s: domain %s: temporary failure: %s", connection, domain, exc)
            return _temp("policy lookup failed, try again later")
        except PostveilError as exc:
            log.error("%s: domain %s: lookup failed: %s", connection, domain, exc)
            return _temp("policy lookup failed, try again later")
        except Exception:
            # Fail closed: an unexpected error defers the mail instead of sending plaintext.
            log.exception("%s: domain %s: internal error", connection, domain)
            return _temp("internal error")
        return self._answer(payload, requirement, connection)

    def reply_now(self, payload: bytes, connection: str) -> bytes | None:
        """Compute the reply without waiting, from a local cache's facts.

        Returns None when the request needs the asynchronous path: a malformed request,
        a domain without cached facts, a cache that is not local, or any error (the
        asynchronous path repeats the work and turns the error into TEMP).
        """
        name, space, key = payload.partition(b" ")
        if not space or not name:
            return None
        domain = domain_from_key(key.decode("utf-8", errors="replace"))
        if domain is None:
            return NOTFOUND
        try:
            requirement = self.service.cached_requirement(domain)
        except Exception:  # noqa: BLE001 - the asynchronous path logs and answers TEMP
            return None
        if requirement is None:
            return None
        return self._answer(payload, requirement, connection)

    def _answer(self, payload: bytes, requirement: Requirement, connection: str) -> bytes:
        line = requirement.policy_line(self.postfix_version)
        if line is None:
            answer = NOTFOUND
        else:
            reply_payload = b"OK " + line.encode("ascii")
            answer = encode(reply_payload)
            if len(reply_payload) > MAX_REPLY_BYTES:
                log.error("%s: domain %s: policy reply exceeds %d bytes", connection,
                          requirement.domain, MAX_REPLY_BYTES)
                return _temp("policy too long")
        # Only replies that require TLS are reused. A stale NOTFOUND is unsafe, because
        # the admin or another MTA's daemon may have raised the requirement in the shared
        # cache and the milter then routes sensitive mail by tls at once. A stale stronger
        # reply at worst defers mail for up to ``ttl``.
        if self.ttl > 0 and requirement.requires_tls:
            if len(self._answers) >= MAX_REUSED_ANSWERS:
                self._answers.clear()
            self._answers[payload] = (time.monotonic() + self.ttl, answer)
        return answer

    def forget(self) -> None:
        """Drop every reused answer, for example after facts changed."""
        self._answers.clear()


class SocketmapProtocol(asyncio.Protocol):
    """One Postfix connection; replies leave in request order.

    ``current_responder`` is called for each request, so a connection that stays
    open across a configuration reload gets answers from the new configuration.
    """

    def __init__(self, current_responder: Callable[[], SocketmapResponder]) -> None:
        self.current_responder = current_responder
        self.decoder = NetstringDecoder(MAX_REQUEST_BYTES)
        self.connection = f"socketmap#{next(_connection_ids)}"
        self.transport: asyncio.Transport | None = None
        self._queue: collections.deque[asyncio.Task[bytes]] = collections.deque()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.decoder.feed(data)
        except NetstringError as exc:
            log.warning("%s: closing connection: %s", self.connection, exc)
            assert self.transport is not None
            self.transport.close()
            return
        if payloads:
            # Only a complete request counts, so a client that trickles bytes is closed too.
            self._arm_idle_timer()
        for payload in payloads:
            self._handle(payload)

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._close_idle)

    def _close_idle(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._queue:
            # A lookup is still running; its reply is due on this connection.
            self._arm_idle_timer()
            return
        log.info("%s: closing connection: no complete request for %gs", self.connection, IDLE_TIMEOUT)
        self.transport.close()

    def _handle(self, payload: bytes) -> None:
        assert self.transport is not None
        responder = self.current_responder()
        if not self._queue:
            answer = responder.cached_reply(payload)
            if answer is None:
                answer = responder.reply_now(payload, self.connection)
            if answer is not None:
                self.transport.write(answer)
                return
        task = asyncio.get_running_loop().create_task(
            responder.reply(payload, self.connection)
        )
        self._queue.append(task)
        task.add_done_callback(self._flush)

    def _flush(self, _: object = None) -> None:
        while self._queue and self._queue[0].done():
            task = self._queue.popleft()
            if self.transport is None or self.transport.is_closing():
                continue
            if task.cancelled():
                # A lookup cancelled under an open connection (for example a service
                # closed after a reload) still gets a reply, so later ones keep their order.
                log.error("%s: lookup was cancelled; replying TEMP", self.connection)
                self.transport.write(_temp("internal error"))
                continue
            self.transport.write(task.result())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for task in self._queue:
            task.cancel()
        self._queue.clear()
        self.transport = None
