"""Postfix access policy delegation (``check_policy_service``, Postfix SMTPD_POLICY_README).

A request is ``name=value`` lines ended by an empty line; the reply is
``action=<action>`` and an empty line. At RCPT, mail from a TLS-exclusive sender to a
domain whose requirement does not force TLS is rejected with 550 5.7.10 (RFC 3463:
encryption needed). Everything else gets DUNNO. A malformed request is logged and the
connection closed; other connections are unaffected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from postveil.audit import AuditError, MessageDecision, RecipientDecision
from postveil.config.policyd import PolicydSection
from postveil.errors import PostveilError, TemporaryFailure
from postveil.policyd.domains import DomainService
from postveil.policyd.socketmap import domain_from_key
from postveil.tlsfacts.facts import DomainFacts
from postveil.tlsfacts.requirement import Requirement, tls_requirement

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8192
MAX_ATTRIBUTES = 100
IDLE_TIMEOUT = 300.0
"""Seconds a connection stays open without a complete request (Postfix reuses policy
connections between requests)."""

DUNNO = "DUNNO"
DEFER_LOOKUP = "451 4.4.3 TLS policy of the recipient domain is unknown, try again later"
_connection_ids = itertools.count(1)


class PolicyRequestError(PostveilError):
    """The request does not follow the policy delegation protocol."""


def parse_request_line(line: bytes) -> tuple[str, str]:
    """Split one ``name=value`` line (without its newline); raises PolicyRequestError."""
    if len(line) > MAX_LINE_BYTES:
        raise PolicyRequestError(f"request line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyRequestError(f"request line is not UTF-8 at byte {exc.start}") from exc
    name, equals, value = text.partition("=")
    if not equals or not name or not name.replace("_", "").isalnum():
        raise PolicyRequestError("request line is not name=value")
    return name, value


def parse_request(lines: list[bytes]) -> dict[str, str]:
    """Parse a whole request; the first occurrence of a repeated name wins."""
    if len(lines) > MAX_ATTRIBUTES:
        raise PolicyRequestError(f"request has more than {MAX_ATTRIBUTES} attributes")
    attributes: dict[str, str] = {}
    for line in lines:
        name, value = parse_request_line(line)
        attributes.setdefault(name, value)
    return attributes


def sender_is_tls_exclusive(sender: str, config: PolicydSection) -> bool:
    sender = sender.lower()
    if not sender or "@" not in sender:
        return False
    domain_pattern = "@" + sender.rpartition("@")[2]
    return sender in config.tls_exclusive_senders or domain_pattern in config.tls_exclusive_senders


def recipient_domain(attributes: dict[str, str]) -> str | None:
    recipient = attributes.get("recipient", "")
    if "@" not in recipient:
        return None
    return domain_from_key(recipient.rpartition("@")[2])


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str
    reason: str


def delegation_verdict(
    attributes: dict[str, str], requirement: Requirement | None, config: PolicydSection
) -> Verdict:
    """Decide the reply for one request from its attributes and the recipient's requirement.

    Pure. ``requirement`` is None when the recipient has no domain that postveil keeps
    facts for: none at all (a local user), an address literal or an invalid name.
    """
    if attributes.get("request") != "smtpd_access_policy":
        return Verdict(DUNNO, "not an access policy request")
    if attributes.get("protocol_state", "").upper() != "RCPT":
        return Verdict(DUNNO, "not at RCPT")
    if not sender_is_tls_exclusive(attributes.get("sender", ""), config):
        return Verdict(DUNNO, "sender is not TLS-exclusive")
    if requirement is None:
        recipient = attributes.get("recipient", "")
        if "@" not in recipient:
            return Verdict(DUNNO, "recipient has no domain")
        # An address literal or an invalid domain name gets NOTFOUND from the socketmap,
        # so Postfix would deliver with smtp_tls_security_level, which may be plaintext.
        return Verdict(
            "550 5.7.10 the recipient's domain is an address literal or an invalid name, "
            "which cannot be held to TLS; this sender may only send over TLS",
            "the recipient domain has no TLS policy (address literal or invalid name)",
        )
    if requirement.requires_tls:
        return Verdict(DUNNO, f"{requirement.domain} requires TLS ({requirement.rule})")
    return Verdict(
        f"550 5.7.10 {requirement.domain} cannot receive mail over required TLS; "
        "this sender may only send over TLS",
        requirement.reason,
    )


class PolicyDelegationServer:
    """Serves ``check_policy_service`` connections over a :class:`DomainService`.

    ``current_service`` is called for each request, so a connection that Postfix
    keeps open across a configuration reload gets the new configuration's answers.
    """

    def __init__(self, current_service: Callable[[], DomainService]) -> None:
        self.current_service = current_service

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = f"policy#{next(_connection_ids)}"
        try:
            while True:
                # The whole request counts, so a client that sends a line now and then
                # cannot hold the connection longer than an idle one.
                async with asyncio.timeout(IDLE_TIMEOUT):
                    lines = await self._read_request(reader, connection)
                if lines is None:
                    return
                attributes = parse_request(lines)
                action = await self._decide(self.current_service(), attributes, connection)
                writer.write(f"action={action}\n\n".encode())
                await writer.drain()
        except PolicyRequestError as exc:
            log.warning("%s: malformed policy request, closing connection: %s", connection, exc)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _read_request(
        self, reader: asyncio.StreamReader, connection: str
    ) -> list[bytes] | None:
        lines: list[bytes] = []
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial or lines:
                    raise PolicyRequestError("connection closed inside a request") from exc
                return None
            except asyncio.LimitOverrunError as exc:
                raise PolicyRequestError("request line too long") from exc
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line:
                if not lines:
                    raise PolicyRequestError("empty request")
                return lines
            lines.append(line)
            if len(lines) > MAX_ATTRIBUTES:
                raise PolicyRequestError(f"request has more than {MAX_ATTRIBUTES} attributes")

    async def _decide(
        self, service: DomainService, attributes: dict[str, str], connection: str
    ) -> str:
        config = service.config
        queue_id = attributes.get("queue_id") or connection
        domain = recipient_domain(attributes)
        exclusive = sender_is_tls_exclusive(attributes.get("sender", ""), config)
        at_rcpt = attributes.get("protocol_state", "").upper() == "RCPT"
        if not at_rcpt:
            return DUNNO
        if domain is None:
            return await self._reply(service, attributes, None, queue_id, "-")
        try:
            if not exclusive:
                await service.ensure_known(domain)
                return DUNNO
            requirement = await _requirement_with_probe(service, domain)
        except TemporaryFailure as exc:
            log.warning("%s: domain %s: TLS facts unavailable: %s", queue_id, domain, exc)
            return DEFER_LOOKUP if exclusive else DUNNO
        except Exception:
            log.exception("%s: domain %s: internal error", queue_id, domain)
            return DEFER_LOOKUP if exclusive else DUNNO
        return await self._reply(service, attributes, requirement, queue_id, domain)

    async def _reply(
        self,
        service: DomainService,
        attributes: dict[str, str],
        requirement: Requirement | None,
        queue_id: str,
        domain: str,
    ) -> str:
        """Return the action for ``requirement``, logging and auditing a rejection."""
        verdict = delegation_verdict(attributes, requirement, service.config)
        if verdict.action != DUNNO:
            log.info("%s: rejected TLS-exclusive sender's recipient in %s: %s",
                     queue_id, domain, verdict.reason)
            await self._record_rejection(service, attributes, verdict.reason)
        return verdict.action

    async def _record_rejection(
        self, service: DomainService, attributes: dict[str, str], reason: str
    ) -> None:
        """Append the RCPT-time rejection to the audit trail; a failure is logged only,
        because the recipient is refused either way and Postfix logs the refusal."""
        audit = service.audit
        if audit is None:
            return
        try:
            record = MessageDecision(
                # Postfix assigns the queue id only after the first accepted recipient,
                # and logs a refusal before that as NOQUEUE; the record does the same.
                queue_id=attributes.get("queue_id") or "NOQUEUE",
                sender=attributes.get("sender", ""),
                recipients=[RecipientDecision(attributes.get("recipient", ""), "reject", reason)],
                config_version=service.config_version,
                tags=["class:tls_exclusive"],
                action="reject",
            )
            await asyncio.to_thread(audit.record_message, record)
        except AuditError as exc:
            log.error("cannot write the RCPT rejection to the audit trail: %s", exc)


async def _requirement_with_probe(service: DomainService, domain: str) -> Requirement:
    """Requirement of ``domain``; a domain never probed is probed first, within
    ``lookup_timeout``, so a first message is judged on evidence."""
    # A TLS hold does not count: it keeps queued mail safe, but it does not show that
    # the domain accepts TLS, and TLS-exclusive mail is refused here, not queued.
    requirement = await service.requirement(domain, include_hold=False)
    if requirement.requires_tls:
        return requirement
    facts = await service.get_facts(domain)
    if facts is not None and facts.last_probe_at is not None:
        return requirement
    try:
        async with asyncio.timeout(service.config.lookup_timeout):
            probed: DomainFacts = await service.probe_now(domain)
    except TimeoutError as exc:
        raise TemporaryFailure(f"probe of {domain} did not finish in time") from exc
    return tls_requirement(probed, service.config, now=service.clock())
