"""The pages of postveil-portal, as an aiohttp application.

A recipient's notification links to ``{base_url}/m/{token}``. From there:

- ``GET  /m/{token}``          who sent the message, to which (masked) address, until
                               when; a button to request a code
- ``POST /m/{token}/code``     make a code, mail it, then 303 to the code form
- ``GET  /m/{token}/code``     the code form
- ``POST /m/{token}/verify``   check the code; a right one sets the session cookie
- ``GET  /m/{token}/message``  headers, text and attachment list (session required)
- ``GET  /m/{token}/download`` the whole message as .eml (session required)
- ``GET  /m/{token}/part/{n}`` one part as a download (session required)
- ``POST /m/{token}/logout``   end the session
- ``GET  /healthz``            ``OK``, for ``postveil status`` and load balancers; it
                               reads no store and writes no audit record

Code requests and code entries are also limited per client address across all
messages (:mod:`postveil.portal.limits`). With ``portal.notify_sender: first_open``,
the first read of each pickup mails the envelope sender a notice in the background,
so a relay that fails or hangs never holds up the recipient's page.

The link token is a secret, because it is half of the way in (the code mailed to the
recipient is the other half). It is never logged: aiohttp's access log is off, and
this module writes its own access line with the route pattern in place of the path.
Log lines and audit records name the portal's message id and the recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from postveil.audit import AuditError, AuditLog, PortalEvent
from postveil.config import Config
from postveil.config.portal import PortalSection
from postveil.portal import mailer, pages
from postveil.portal.budget import BudgetExhausted, ReadBudget, read_cost
from postveil.portal.housekeeping import purge_expired
from postveil.portal.limits import (
    ClientLimiter,
    IPv4or6Address,
    Rejection,
    client_address,
    client_key,
)
from postveil.portal.notices import NOTICE_STOP_WAIT, SenderNotices
from postveil.portal.parsing import ParseFailed, Parser, ParseTimeout
from postveil.portal.reading import MAX_PARTS, MessageView, has_too_many_parts
from postveil.portal.store import Pickup, PortalError, PortalStore, RetiredKeyError

log = logging.getLogger("postveil.portal")
access_log = logging.getLogger("postveil.portal.access")

SESSION_COOKIE = "postveil_session"

SEND_TIMEOUT = 10.0
"""Seconds a code request waits for the relay to accept the code mail before it shows
"try again later". The default sender also uses it as its SMTP socket timeout, so a
stop (STOP_GRACE, 10 s) is not held up by a relay that does not reply."""

MAX_REQUEST_SIZE = 16 * 1024
"""Largest request body in bytes. The only forms carry a code."""

MAX_CODE_INPUT = 64
"""Characters of the code field that are checked; the code itself has 8 digits."""

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
"""Shape of a link or session token (``secrets.token_urlsafe``). Anything else is not
looked up."""

SendFunction = Callable[[PortalSection, EmailMessage], None]
"""Sends one message or raises PortalError, like :func:`postveil.portal.mailer.send`."""

UNREADABLE_NOTICE = (
    "This message is too complex or too damaged to show here. Download the whole "
    "message below and open it in your mail program."
)
"""Shown in place of the message when its MIME structure cannot be parsed."""

MESSAGE_ID_KEY = web.RequestKey("portal_message", str)
"""The portal message id a request concerns, for the access line."""

READ_WAIT = 20.0
"""Seconds a page view or download waits for room in the read budget
(``portal.read_memory_budget``) before it gets status 503."""

READS_PER_LINK = 1
"""Page views and downloads of one link that hold decrypted bytes at once; further
requests of that link wait for their turn, within READ_WAIT."""

DOWNLOAD_CHUNK = 256 * 1024
"""Bytes of a download written to the connection at a time."""

BUSY_RETRY_AFTER = 60
"""Seconds in the Retry-After header of the page that reports the portal busy."""

DROPPED_CLIENTS_LOG_INTERVAL = 3600.0
"""Seconds between warnings that the table of client limits is full."""

NO_FORWARDED_LOG_INTERVAL = 3600.0
"""Seconds between warnings about a trusted proxy that sent no X-Forwarded-For."""


@dataclass
class _ParseTurn:
    """The lock that the parses of one link take turns on, and how many requests
    hold it or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requests: int = 0


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    host = f"[{host}]" if ":" in host else host
    if port is None or port == default:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_of(url: str) -> str | None:
    """Return the origin (``scheme://host[:port]``, lower case, default port left out)
    of ``url``, or None when it has none (such as the ``null`` origin)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return _origin(parts.scheme.lower(), parts.hostname.lower(), port)


class Portal:
    """Request handlers over one store, audit log and mail sender."""

    def __init__(
        self,
        config: Config,
        store: PortalStore,
        audit: AuditLog,
        *,
        send: SendFunction,
        send_timeout: float,
    ) -> None:
        section = config.portal
        if section.base_url is None:
            raise PortalError("portal.base_url is not set: the portal cannot build its links")
        self.section = section
        self.store = store
        self.audit = audit
        self._send = send
        self._send_timeout = send_timeout
        base = urlsplit(section.base_url)
        self.https = base.scheme == "https"
        self.origin = origin_of(section.base_url)
        self.prefix = base.path.rstrip("/")
        """Path of base_url, without the trailing slash; every route starts with it."""
        # SQLite is used from one thread at a time: the store has one connection.
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-store")
        self._mail_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="portal-mail")
        # Pickup notices have threads of their own, so that notices waiting on a slow
        # relay never hold up the code mails that recipients wait for.
        self._notice_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="portal-notice")
        # Messages are parsed one at a time in a child process with a time limit
        # (parsing.py). This thread waits for the process, so the event loop does not.
        self._parse_threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-parse")
        self.parser = Parser(section.view_time_limit)
        self._parse_turns: dict[str, _ParseTurn] = {}
        """Requests waiting to parse, by link token (see :meth:`_parse`)."""
        self.read_budget = ReadBudget(section.read_budget, per_link=READS_PER_LINK, wait=READ_WAIT)
        """Decrypted bytes held by reads in progress (see :meth:`_with_message`)."""
        self.limiter = ClientLimiter(
            codes_per_hour=section.client_codes_per_hour,
            wrong_codes_per_hour=section.client_wrong_codes_per_hour,
            max_clients=section.max_tracked_clients,
        )
        self._trusted_proxies = section.trusted_networks
        self.write_timeout = section.write_timeout
        """Seconds a response waits for the client to take the next part of it
        (``portal.write_timeout``, see :meth:`send`)."""
        self._dropped_reported = 0
        self._dropped_warned_at = -math.inf
        self._no_forwarded_warned_at = -math.inf
        self.notices = SenderNotices(
            section,
            claim=lambda token: self._in_store(store.claim_sender_notice, token),
            send=self._send_notice,
            audit=self._audit,
        )

    # -- helpers -------------------------------------------------------------------

    async def _in_store(
        self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_thread, lambda: function(*args, **kwargs))

    async def _in_parser(
        self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parse_threads, lambda: function(*args, **kwargs))

    async def _parse(
        self, token: str, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run a parse for the link ``token`` after the earlier parses for that link.

        Parses run one at a time for all links. Taking turns per link keeps at most one
        parse of each link in that queue, so a recipient who sends many requests at
        once delays the pages of others by one time limit, not by one per request.
        """
        turn = self._parse_turns.get(token)
        if turn is None:
            turn = self._parse_turns[token] = _ParseTurn()
        turn.requests += 1
        try:
            async with turn.lock:
                return await self._in_parser(function, *args, **kwargs)
        finally:
            turn.requests -= 1
            if turn.requests == 0:
                del self._parse_turns[token]

    async def _send_mail(self, message: EmailMessage) -> None:
        """Send ``message`` on a mail thread; raises PortalError, or TimeoutError after
        the send timeout."""
        await self._send_on(self._mail_threads, message)

    async def _send_notice(self, message: EmailMessage) -> None:
        """Send a pickup notice on a notice thread, as :meth:`_send_mail` does."""
        await self._send_on(self._notice_threads, message)

    async def _send_on(self, threads: ThreadPoolExecutor, message: EmailMessage) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.run_in_executor(threads, self._send, self.section, message),
            self._send_timeout,
        )

    async def purge(self) -> int:
        """Delete expired messages and sessions, each message after its ``expired``
        records (see :func:`purge_expired`)."""
        return await self._in_store(purge_expired, self.store, self.audit)

    def close(self) -> None:
        self._mail_threads.shutdown(wait=False, cancel_futures=True)
        self._notice_threads.shutdown(wait=False, cancel_futures=True)
        self._parse_threads.shutdown(wait=False, cancel_futures=True)
        self.parser.close()
        self._store_thread.shutdown(wait=True)

    def url(self, token: str, suffix: str = "") -> str:
        return f"{self.prefix}/m/{token}{suffix}"

    def page(self, body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def not_found(self) -> web.Response:
        return self.page(pages.not_found(self.section.organisation), status=404)

    def problem(self, status: int, title: str, text: str) -> web.Response:
        return self.page(pages.problem(self.section.organisation, title, text), status=status)

    @staticmethod
    def redirect(location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    async def _pickup(self, request: web.Request) -> tuple[str, Pickup] | None:
        """Return the link token and its pickup, or None when the token is malformed,
        unknown or expired (the caller shows the one not-found page for all three)."""
        token = request.match_info["token"]
        if not _TOKEN_RE.fullmatch(token):
            return None
        pickup = await self._in_store(self.store.pickup, token)
        if pickup is None:
            return None
        request[MESSAGE_ID_KEY] = pickup.message_id
        return token, pickup

    async def _session(self, request: web.Request, token: str) -> str | None:
        session = request.cookies.get(SESSION_COOKIE)
        if not session or not _TOKEN_RE.fullmatch(session):
            return None
        if await self._in_store(self.store.session_valid, token, session):
            return session
        return None

    async def _audit(self, event: str, pickup: Pickup, reason: str = "") -> bool:
        """Append a portal event; log and return False when it was not written."""
        record = PortalEvent(event, pickup.message_id, pickup.recipient, pickup.queue_id, reason)
        try:
            await asyncio.to_thread(self.audit.append, record)
        except AuditError as exc:
            log.error(
                "message %s: cannot record the %s event for %s: %s",
                pickup.message_id,
                event,
                pickup.recipient,
                exc,
            )
            return False
        return True

    def _audit_failed(self) -> web.Response:
        # Reading without a record in the audit trail is not allowed.
        return self.problem(
            503,
            "Try again later",
            "The portal cannot open messages at the moment. Please try again in a few minutes.",
        )

    # -- pages before the code -----------------------------------------------------

    async def landing(self, request: web.Request) -> web.Response:
        found = await self._pickup(request)
        if found is None:
            return self.not_found()
        token, pickup = found
        if await self._session(request, token) is not None:
            return self.redirect(self.url(token, "/message"))
        return self.page(
            pages.landing(
                self.section.organisation,
                sender=pickup.sender,
                recipient=pickup.recipient,
                expires=pickup.expires,
                code_action=self.url(token, "/code"),
            )
        )

    async def request_code(self, request: web.Request) -> web.Response:
        found = await self._pickup(request)
        if found is None:
            return self.not_found()
        token, pickup = found
        section = self.section
        client = self._client(request)
        rejection = self.limiter.request_code(client, time.monotonic())
        self._warn_if_clients_dropped()
        if rejection is not None:
            return await self._code_requests_rejected(token, pickup, client, rejection)
        try:
            issue = await self._in_store(
                self.store.issue_code,
                token,
                lifetime=section.code_lifetime,
                per_hour=section.codes_per_hour,
            )
        except RetiredKeyError as exc:
            # Fail closed: a code digested with a retired key could be guessed offline
            # by anyone with that key and a copy of the database.
            log.error(
                "message %s: cannot issue a code for %s: %s",
                pickup.message_id,
                pickup.recipient,
                exc,
            )
            return self.problem(
                503,
                "Try again later",
                "The code could not be sent just now. Please try again in a few minutes.",
            )
        except PortalError:
            # The message expired between the lookup and this call.
            return self.not_found()
        if issue.retired_key_id is not None:
            log.warning(
                "'postveil portal rekey' retired master key id %s: codes are now digested "
                "with master key id %s, the key it rotated the store to",
                issue.retired_key_id,
                self.store.keyring.current.key_id,
            )
        if issue.code is None:
            log.warning(
                "message %s: rejected a code request for %s: codes_per_hour (%d) reached",
                pickup.message_id,
                pickup.recipient,
                section.codes_per_hour,
            )
            await self._audit("code_refused", pickup, f"codes_per_hour {section.codes_per_hour}")
            # The entry form comes with the notice, so the most recent code can still
            # be entered.
            response = self._code_form(
                token,
                pickup,
                f"Too many codes requested: at most {section.codes_per_hour} codes are sent "
                "for one message per hour. Enter the most recent code you received, or try "
                "again later.",
            )
            response.set_status(429)
            return response

        message = mailer.code_message(
            section, recipient=pickup.recipient, code=issue.code, lifetime=section.code_lifetime
        )
        try:
            await self._send_mail(message)
        except (PortalError, TimeoutError) as exc:
            cause = str(exc) if isinstance(exc, PortalError) else "timed out"
            log.error(
                "message %s: cannot send a code to %s: %s",
                pickup.message_id,
                pickup.recipient,
                cause,
            )
            return self.problem(
                503,
                "Try again later",
                "The code could not be sent just now. Please try again in a few minutes.",
            )
        log.info("message %s: code sent to %s", pickup.message_id, pickup.recipient)
        await self._audit("code_sent", pickup)
        return self.redirect(self.url(token, "/code"))

    def client_of(self, request: web.Request) -> IPv4or6Address | None:
        """Return the address of the request's client: the peer, or the address a
        trusted proxy put in X-Forwarded-For (see :func:`client_address`)."""
        forwarded = request.headers.getall("X-Forwarded-For", [])
        return client_address(request.remote, forwarded, self._trusted_proxies)

    def client_text(self, request: web.Request) -> str:
        """Return the client of the request as access lines name it: its address,
        followed by "via" and the peer when a trusted proxy forwarded the request."""
        # The client is parsed as an address, so the header's text never reaches the
        # log.
        client = self.client_of(request)
        peer = request.remote or "-"
        return peer if client is None or str(client) == peer else f"{client} via {peer}"

    def _client(self, request: web.Request) -> str:
        """Return the key under which the request's client is limited (see
        :func:`client_key`)."""
        address = self.client_of(request)
        if "X-Forwarded-For" not in request.headers and address is not None:
            self._warn_if_proxy_sent_no_client(address)
        return client_key(address)

    def _warn_if_proxy_sent_no_client(self, address: IPv4or6Address) -> None:
        """Warn, at most once an hour, that a trusted proxy sent no X-Forwarded-For:
        every client behind it then shares the proxy's limits."""
        if not any(address in network for network in self._trusted_proxies):
            return
        now = time.monotonic()
        if now - self._no_forwarded_warned_at < NO_FORWARDED_LOG_INTERVAL:
            return
        self._no_forwarded_warned_at = now
        log.warning(
            "a code request or entry from %s (in portal.trusted_proxies) has no "
            "X-Forwarded-For header. If it came through a reverse proxy, all clients "
            "behind that proxy share one set of limits per client: have the proxy append "
            "the client's address (docs/portal.md, 'Limits per client')",
            address,
        )

    def _warn_if_clients_dropped(self) -> None:
        dropped = self.limiter.dropped
        now = time.monotonic()
        if dropped == self._dropped_reported or now - self._dropped_warned_at < (
            DROPPED_CLIENTS_LOG_INTERVAL
        ):
            return
        log.warning(
            "the table of client limits is full (portal.max_tracked_clients %d): dropped "
            "the counts of %d least recently seen client(s) since the last warning",
            self.limiter.max_clients,
            dropped - self._dropped_reported,
        )
        self._dropped_reported = dropped
        self._dropped_warned_at = now

    async def _code_requests_rejected(
        self, token: str, pickup: Pickup, client: str, rejection: Rejection
    ) -> web.Response:
        limit = self.section.client_codes_per_hour
        if rejection.first:
            log.warning(
                "client %s: rejected code requests: client_codes_per_hour (%d) reached "
                "(message %s, recipient %s)",
                client,
                limit,
                pickup.message_id,
                pickup.recipient,
            )
            await self._audit(
                "code_refused", pickup, f"client_codes_per_hour {limit} client {client}"
            )
        # As with the limit per recipient, the form lets the most recent code be entered.
        response = self._code_form(
            token,
            pickup,
            "Too many codes were requested from your network in the last hour. Enter the most "
            f"recent code you received, or try again in {_minutes_text(rejection.retry_after)}.",
        )
        response.set_status(429)
        response.headers["Retry-After"] = str(math.ceil(rejection.retry_after))
        return response

    async def _reject_code_entry(
        self, pickup: Pickup, client: str, rejection: Rejection
    ) -> web.Response:
        limit = self.section.client_wrong_codes_per_hour
        if rejection.first:
            log.warning(
                "client %s: rejected code entries: client_wrong_codes_per_hour (%d) reached "
                "(message %s, recipient %s)",
                client,
                limit,
                pickup.message_id,
                pickup.recipient,
            )
            await self._audit(
                "code_entry_refused", pickup, f"client_wrong_codes_per_hour {limit} client {client}"
            )
        response = self.problem(
            429,
            "Too many wrong codes",
            "Too many wrong codes were entered from your network in the last hour. Please try "
            f"again in {_minutes_text(rejection.retry_after)}.",
        )
        response.headers["Retry-After"] = str(math.ceil(rejection.retry_after))
        return response

    async def code_form(self, request: web.Request) -> web.Response:
        found = await self._pickup(request)
        if found is None:
            return self.not_found()
        token, pickup = found
        if await self._session(request, token) is not None:
            return self.redirect(self.url(token, "/message"))
        return self._code_form(token, pickup)

    def _code_form(self, token: str, pickup: Pickup, notice: str | None = None) -> web.Response:
        return self.page(
            pages.code_entry(
                self.section.organisation,
                recipient=pickup.recipient,
                verify_action=self.url(token, "/verify"),
                code_action=self.url(token, "/code"),
                notice=notice,
            )
        )

    def _new_code_needed(self, token: str, reason: str) -> web.Response:
        return self.page(
            pages.new_code_needed(
                self.section.organisation, reason=reason, code_action=self.url(token, "/code")
            )
        )

    async def verify(self, request: web.Request) -> web.Response:
        found = await self._pickup(request)
        if found is None:
            return self.not_found()
        token, pickup = found
        form = await request.post()
        entered = form.get("code")
        code = entered[:MAX_CODE_INPUT] if isinstance(entered, str) else ""
        section = self.section
        client = self._client(request)
        started = time.monotonic()
        rejection = self.limiter.begin_entry(client, started)
        self._warn_if_clients_dropped()
        if rejection is not None:
            return await self._reject_code_entry(pickup, client, rejection)
        wrong = False
        try:
            check = await self._in_store(
                self.store.check_code,
                token,
                code,
                attempts=section.code_attempts,
                session_lifetime=section.session_lifetime,
            )
            wrong = check.outcome in ("wrong", "voided")
        finally:
            self.limiter.end_entry(client, started, wrong=wrong)

        if check.outcome == "ok" and check.session is not None:
            return await self._verified(token, pickup, check.session)
        if check.outcome == "wrong":
            log.info("message %s: wrong code entered for %s", pickup.message_id, pickup.recipient)
            await self._audit("code_wrong", pickup)
            return self._code_form(
                token, pickup, "That code is not correct. Check it and enter it again."
            )
        if check.outcome in ("voided", "void"):
            if check.outcome == "voided":
                log.warning(
                    "message %s: code for %s is void after %d wrong entries",
                    pickup.message_id,
                    pickup.recipient,
                    section.code_attempts,
                )
                await self._audit("code_void", pickup, f"code_attempts {section.code_attempts}")
            else:
                log.info(
                    "message %s: void code entered for %s", pickup.message_id, pickup.recipient
                )
            return self._new_code_needed(
                token, "The code was entered wrongly too many times and no longer works."
            )
        if check.outcome == "expired":
            return self._new_code_needed(token, "The code has expired.")
        return self._new_code_needed(
            token, "No code is waiting for this link, or the code was already used."
        )

    async def _verified(self, token: str, pickup: Pickup, session: str) -> web.Response:
        if not await self._audit("verified", pickup):
            await self._in_store(self.store.end_session, session)
            return self._audit_failed()
        log.info("message %s: %s entered the right code", pickup.message_id, pickup.recipient)
        response = self.redirect(self.url(token, "/message"))
        response.set_cookie(
            SESSION_COOKIE,
            session,
            path=self.url(token),
            max_age=int(self.section.session_lifetime),
            httponly=True,
            secure=self.https,
            samesite="Strict",
        )
        return response

    # -- pages with a session ------------------------------------------------------

    async def _with_message(
        self,
        request: web.Request,
        respond: Callable[[str, Pickup, bytes], Awaitable[web.StreamResponse]],
        *,
        event: str | None,
        first_only: bool = False,
    ) -> web.StreamResponse:
        """Decrypt the message for a request with a valid session and return what
        ``respond(token, pickup, raw)`` returns, sent before the message's bytes are
        released from the read budget.

        ``event`` is appended to the audit trail first. With ``first_only`` it is
        appended only when the pickup was never opened before. Without room in the
        budget within READ_WAIT, the response is a 503 page and nothing is recorded.
        """
        found = await self._pickup(request)
        if found is None:
            return self.not_found()
        token, pickup = found
        session = await self._session(request, token)
        if session is None:
            return self.redirect(self.url(token))
        # A message stored before max_message_size was lowered may cost more than the
        # whole budget: it then takes all of it, so it runs alone.
        cost = min(read_cost(pickup.size), self.read_budget.capacity)
        async with contextlib.AsyncExitStack() as reservation:
            try:
                await reservation.enter_async_context(self.read_budget.reserve(token, cost))
            except BudgetExhausted:
                return self._busy(token, pickup)
            if pickup.opened is None:
                # The reads of one link take turns for the budget, so an earlier read
                # may have opened the pickup while this one waited.
                refreshed = await self._in_store(self.store.pickup, token)
                if refreshed is None:
                    return self.not_found()
                pickup = refreshed
            if first_only and pickup.opened is not None:
                event = None
            # The event is recorded before the message is decrypted, so no reading goes
            # without a record.
            if event is not None and not await self._audit(event, pickup):
                return self._audit_failed()
            raw = await self._in_store(self.store.read_message, token, session)
            if raw is None:
                return self.redirect(self.url(token))
            if pickup.opened is None and self.section.notify_sender == "first_open":
                await self.notices.start(token, pickup, raw)
            response = await respond(token, pickup, raw)
            if not response.prepared:
                await self.send(request, response)
            return response

    async def send(self, request: web.Request, response: web.StreamResponse) -> None:
        """Prepare and send a response that its handler did not send itself.

        A client that does not take the whole response within ``write_timeout``
        seconds has its connection reset, so it keeps no read budget, no turn of
        its link and no buffered copy of the page. A client that disconnects is
        logged too. Neither raises: aiohttp then finds the response unsent on a
        closed connection and drops it.
        """
        try:
            async with asyncio.timeout(self.write_timeout):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            self._abort(request, "the response", "timed out", "all of it")
        except ConnectionError as exc:
            log.info(
                "client %s: message %s: disconnected before the response was sent: %s",
                self.client_text(request),
                request.get(MESSAGE_ID_KEY, "-"),
                type(exc).__name__,
            )

    def _abort(self, request: web.Request, what: str, cause: str, unsent: str) -> None:
        """Log that ``unsent`` of ``what`` could not be sent in time and drop the
        connection at once.

        The client may have read data all along: a write waits until the kernel's send
        buffer has room, so a client that reads slowly times out as well as one that
        reads nothing.
        """
        log.warning(
            "client %s: message %s: %s %s: the client did not take %s within %gs "
            "(portal.write_timeout); closing the connection",
            self.client_text(request),
            request.get(MESSAGE_ID_KEY, "-"),
            what,
            cause,
            unsent,
            self.write_timeout,
        )
        _drop_connection(request)

    def _busy(self, token: str, pickup: Pickup) -> web.Response:
        """Return the 503 page for a read that got no turn within READ_WAIT, and log
        whether the budget was full or the link's own earlier read still ran."""
        budget = self.read_budget
        if budget.reads_of(token) >= budget.per_link:
            # A larger read_memory_budget would not have helped: the link's earlier
            # page view or download was still being sent, often to a client that
            # reads slowly or not at all (ended by portal.write_timeout).
            log.warning(
                "message %s: rejected a read for %s: an earlier page view or download of "
                "the same link was still being sent after %gs, and each link has one read "
                "at a time",
                pickup.message_id,
                pickup.recipient,
                budget.wait,
            )
            text = (
                "This message is still being sent to you in another window or download. "
                "Please let that finish, then try again in a minute."
            )
        else:
            log.warning(
                "message %s: rejected a read for %s: no room in portal.read_memory_budget "
                "(%d of %d bytes reserved, %d reads waiting) within %gs",
                pickup.message_id,
                pickup.recipient,
                budget.reserved,
                budget.capacity,
                budget.waiting,
                budget.wait,
            )
            text = "The portal is busy opening other messages. Please try again in a minute."
        response = self.problem(503, "Try again later", text)
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
        return response

    async def message(self, request: web.Request) -> web.StreamResponse:
        async def respond(token: str, pickup: Pickup, raw: bytes) -> web.StreamResponse:
            view, notice = await self._view(token, raw, pickup)
            if pickup.opened is None:
                log.info("message %s: opened by %s", pickup.message_id, pickup.recipient)
            return self.page(
                pages.message_page(
                    self.section.organisation,
                    view,
                    notice=notice,
                    expires=pickup.expires,
                    download_action=self.url(token, "/download"),
                    part_action=self.url(token, "/part/"),
                    logout_action=self.url(token, "/logout"),
                )
            )

        return await self._with_message(request, respond, event="opened", first_only=True)

    async def _view(self, token: str, raw: bytes, pickup: Pickup) -> tuple[MessageView, str | None]:
        """Return the page's view of ``raw`` and no notice, or, for a message that cannot
        be parsed, an empty view and UNREADABLE_NOTICE. The recipient can then still
        download the message whole."""
        if has_too_many_parts(raw):
            log.warning(
                "message %s: more than %d MIME parts; offering the .eml only",
                pickup.message_id,
                MAX_PARTS,
            )
            return MessageView((), (), ()), UNREADABLE_NOTICE
        try:
            view = await self._parse(token, self.parser.view, raw)
        except (ParseTimeout, ParseFailed) as exc:
            # Python 3.11's email package raises RecursionError for MIME parts nested
            # about a thousand deep or a Content-Type of thousands of parentheses, and
            # other errors for other damage. A parsing process over its memory limit
            # reports MemoryError. ParseFailed names only the class, because the
            # exception's text may quote the message.
            log.warning(
                "message %s: cannot show the message as a page (%s); offering the .eml only",
                pickup.message_id,
                exc,
            )
            return MessageView((), (), ()), UNREADABLE_NOTICE
        except Exception as exc:  # noqa: BLE001 - any other failure of the parsing process
            log.warning(
                "message %s: cannot show the message as a page (%s); offering the .eml only",
                pickup.message_id,
                type(exc).__name__,
            )
            return MessageView((), (), ()), UNREADABLE_NOTICE
        return view, None

    async def download(self, request: web.Request) -> web.StreamResponse:
        async def respond(token: str, pickup: Pickup, raw: bytes) -> web.StreamResponse:
            log.info("message %s: downloaded by %s", pickup.message_id, pickup.recipient)
            return await self._stream(request, pickup, raw, "message.eml")

        return await self._with_message(request, respond, event="downloaded")

    async def download_part(self, request: web.Request) -> web.StreamResponse:
        number_text = request.match_info["number"]
        if not number_text.isdigit() or len(number_text) > 6:
            return self.not_found()
        number = int(number_text)

        # The part is located before the download is recorded, so a wrong number
        # leaves no record of a download that did not happen.
        async def respond(token: str, pickup: Pickup, raw: bytes) -> web.StreamResponse:
            if has_too_many_parts(raw):
                # The message page lists no parts for such a message (see _view).
                return self.not_found()
            try:
                found = await self._parse(token, self.parser.part, raw, number)
            except (ParseTimeout, ParseFailed) as exc:
                log.warning("message %s: part %d not offered (%s)", pickup.message_id, number, exc)
                return self.problem(
                    503,
                    "Attachment not available",
                    "This attachment could not be prepared. Download the whole message "
                    "from the message page instead.",
                )
            if found is None:
                return self.not_found()

            if not await self._audit("downloaded", pickup):
                return self._audit_failed()
            data, filename = found
            log.info(
                "message %s: part %d downloaded by %s", pickup.message_id, number, pickup.recipient
            )
            return await self._stream(request, pickup, data, filename)

        return await self._with_message(request, respond, event=None)

    async def _stream(
        self, request: web.Request, pickup: Pickup, data: bytes, filename: str
    ) -> web.StreamResponse:
        """Send ``data`` as a download in chunks of DOWNLOAD_CHUNK bytes, so the
        connection's buffer never keeps another copy of it. A client that disconnects
        ends the download early, and so does one that does not take the next chunk
        within ``write_timeout`` seconds (see :meth:`send`)."""
        response = web.StreamResponse(headers=_attachment_headers(filename))
        response.content_length = len(data)
        chunks = memoryview(data)
        sent = 0
        try:
            # A client that left while the read waited for the budget or a parse is
            # gone before the headers are written.
            async with asyncio.timeout(self.write_timeout):
                await response.prepare(request)
            while sent < len(data):
                async with asyncio.timeout(self.write_timeout):
                    await response.write(chunks[sent : sent + DOWNLOAD_CHUNK])
                sent = min(sent + DOWNLOAD_CHUNK, len(data))
            async with asyncio.timeout(self.write_timeout):
                await response.write_eof()
        except TimeoutError:
            self._abort(
                request,
                f"the download by {pickup.recipient}",
                f"ended after {sent} of {len(data)} bytes",
                "the next chunk of at most 256 KB",
            )
        except ConnectionError as exc:
            log.warning(
                "client %s: message %s: download by %s ended after %d of %d bytes: %s",
                self.client_text(request),
                pickup.message_id,
                pickup.recipient,
                sent,
                len(data),
                type(exc).__name__,
            )
            _drop_connection(request)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not _TOKEN_RE.fullmatch(token):
            return self.not_found()
        session = request.cookies.get(SESSION_COOKIE)
        if session and _TOKEN_RE.fullmatch(session):
            await self._in_store(self.store.end_session, session)
        response = self.page(
            pages.signed_out(self.section.organisation, landing_action=self.url(token))
        )
        response.del_cookie(
            SESSION_COOKIE, path=self.url(token), secure=self.https, samesite="Strict"
        )
        return response


def _drop_connection(request: web.Request) -> None:
    """Close the request's connection at once, discarding the bytes not yet sent.

    close() would keep the socket until the client took the buffered bytes, which a
    client that stopped reading never does, and even abort() leaves the kernel to
    deliver what its send buffer contains (up to net.ipv4.tcp_wmem, 4 MiB by default on
    Linux). A linger time of zero makes the close a reset, which frees both at once.
    """
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _minutes_text(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute" + ("" if minutes == 1 else "s")


def _attachment_headers(filename: str) -> dict[str, str]:
    """Return the headers of a download that no browser shows inline: octet-stream,
    attachment disposition, and the file name as ASCII and, for other scripts, as
    RFC 6266 ``filename*``."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    disposition = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return {"Content-Type": "application/octet-stream", "Content-Disposition": disposition}


# -- middleware and headers ----------------------------------------------------------


def _security_headers(portal: Portal) -> dict[str, str]:
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "X-Robots-Tag": "noindex, nofollow",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src '{pages.STYLE_HASH}'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    }
    if portal.https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def _make_middleware(portal: Portal) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Check the Origin of POST requests, turn every error into a page, send the
        response within ``portal.write_timeout``, and write the access line without the
        path, which contains the link token."""
        started = time.monotonic()
        response = await _respond(portal, request, handler)
        if not response.prepared:
            # Sent here rather than by aiohttp, which has no write timeout.
            await portal.send(request, response)
        resource = request.match_info.route.resource
        pattern = resource.canonical if resource is not None else "-"
        access_log.info(
            "%s %s %s %d message=%s %.0f ms",
            portal.client_text(request),
            request.method,
            pattern,
            response.status,
            request.get(MESSAGE_ID_KEY, "-"),
            (time.monotonic() - started) * 1000,
        )
        return response

    return guard


async def _respond(
    portal: Portal,
    request: web.Request,
    handler: Handler,
) -> web.StreamResponse:
    if request.method == "POST":
        origin = request.headers.get("Origin")
        # Sec-Fetch-Site covers a browser that sends no Origin.
        foreign = (
            origin_of(origin) != portal.origin
            if origin is not None
            else request.headers.get("Sec-Fetch-Site") == "cross-site"
        )
        if foreign:
            log.warning("rejected a POST request from another origin")
            return portal.problem(
                403, "Request rejected", "This form can only be sent from the portal's own pages."
            )
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return portal.not_found()
    except web.HTTPException as exc:
        response = portal.problem(exc.status, exc.reason, "The request could not be handled.")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except PortalError as exc:
        # Written by the store with ids and causes only, never message content.
        log.error("request failed: %s", exc)
    except Exception as exc:  # noqa: BLE001 - any failure becomes a 500 page
        # The class only: an exception's text may quote message content.
        log.error("request failed with %s", type(exc).__name__)
    return portal.problem(
        500, "Something went wrong", "The portal could not handle this request. Please try again."
    )


class ExceptionClassOnly(logging.Filter):
    """Replace a record's traceback with the exception's class name.

    aiohttp logs a malformed request with an exception whose text quotes the request
    line (aiohttp 3.14: ``BadStatusLine``), and that line contains the link token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _redact_server_log() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(existing, ExceptionClassOnly) for existing in server_log.filters):
        server_log.addFilter(ExceptionClassOnly())


PORTAL_KEY = web.AppKey("portal", Portal)


def make_app(
    config: Config,
    store: PortalStore,
    audit: AuditLog,
    *,
    send: SendFunction | None = None,
    send_timeout: float = SEND_TIMEOUT,
) -> web.Application:
    """Build the portal's application. Raises PortalError when ``portal.base_url`` is
    null. The caller runs it with aiohttp's access log off (``access_log=None``).

    ``send`` defaults to :func:`postveil.portal.mailer.send` with ``send_timeout``.
    """
    if send is None:
        send = functools.partial(mailer.send, timeout=send_timeout)
    portal = Portal(config, store, audit, send=send, send_timeout=send_timeout)
    _redact_server_log()
    app = web.Application(middlewares=[_make_middleware(portal)], client_max_size=MAX_REQUEST_SIZE)
    app[PORTAL_KEY] = portal
    headers = _security_headers(portal)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    async def close_portal(app: web.Application) -> None:
        # Cleanup runs after the requests in progress, so no new notice starts here.
        await portal.notices.finish(NOTICE_STOP_WAIT)
        await asyncio.to_thread(portal.close)

    app.on_response_prepare.append(add_headers)
    app.on_cleanup.append(close_portal)
    base = f"{portal.prefix}/m/{{token}}"
    app.router.add_get(base, portal.landing)
    app.router.add_post(base + "/code", portal.request_code)
    app.router.add_get(base + "/code", portal.code_form)
    app.router.add_post(base + "/verify", portal.verify)
    # No HEAD on these: it would record an opening or a download that sent nothing.
    app.router.add_get(base + "/message", portal.message, allow_head=False)
    app.router.add_get(base + "/download", portal.download, allow_head=False)
    app.router.add_get(base + "/part/{number}", portal.download_part, allow_head=False)
    app.router.add_post(base + "/logout", portal.logout)
    app.router.add_get(portal.prefix + HEALTH_PATH, _health)
    return app


HEALTH_PATH = "/healthz"
"""Path, after the path of base_url, of the page that shows the daemon serves requests."""


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")
